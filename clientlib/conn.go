package clientlib

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// The socket protocol is HTTP/1.1, but a client needs little of it: one
// request at a time per connection, a status, two headers and a body of
// known length. Speaking that much directly keeps net/http (and its
// start-up cost) out of every program that links this package.

// maxIdle is how many open connections a Client keeps for reuse.
const maxIdle = 4

// maxBody caps an answer; the agent's are a few KiB at most.
const maxBody = 1 << 20

// pool dials the socket and keeps idle connections.
type pool struct {
	socket string
	check  func(net.Conn) error // verifies each new connection's server
	mu     sync.Mutex
	idle   []*conn
}

type conn struct {
	net.Conn
	r *bufio.Reader
}

type response struct {
	status     int
	retryAfter time.Duration
	body       []byte
}

// roundTrip sends one request and reads its answer. A request on a kept
// connection that the agent closed meanwhile (it drops idle connections
// after two minutes) is sent once more on a new connection: every request
// of the protocol may be repeated.
func (p *pool) roundTrip(ctx context.Context, method, path string, body []byte) (*response, error) {
	if c := p.get(); c != nil {
		resp, reusable, err := exchange(ctx, c, method, path, body)
		if err == nil {
			p.put(c, reusable)
			return resp, nil
		}
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", p.socket)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, op.Err
		}
		return nil, err
	}
	if err := p.check(nc); err != nil {
		nc.Close()
		return nil, err
	}
	c := &conn{Conn: nc, r: bufio.NewReaderSize(nc, 2048)}
	resp, reusable, err := exchange(ctx, c, method, path, body)
	if err != nil {
		c.Close()
		return nil, err
	}
	p.put(c, reusable)
	return resp, nil
}

func (p *pool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return c
	}
	return nil
}

func (p *pool) put(c *conn, reusable bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !reusable || len(p.idle) >= maxIdle {
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// exchange writes the request and reads the answer, within ctx: its
// deadline becomes the connection's, and its cancellation interrupts
// blocked reads and writes.
func exchange(ctx context.Context, c *conn, method, path string, body []byte) (*response, bool, error) {
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}

	// Built by hand, not with fmt: this runs once in every CLI process.
	req := make([]byte, 0, 256+len(body))
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "+ipc.Host+"\r\nUser-Agent: tokenagent-clientlib\r\nAccept: application/json\r\n"...)
	if body != nil || method == "POST" {
		if body != nil {
			req = append(req, "Content-Type: application/json\r\n"...)
		}
		req = append(req, "Content-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	if _, err := c.Write(req); err != nil {
		return nil, false, err
	}
	return readResponse(c.r)
}

// readResponse reads one HTTP/1.1 answer; reusable reports whether the
// connection may carry another request.
func readResponse(r *bufio.Reader) (resp *response, reusable bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return nil, false, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || status < 100 || status > 999 {
		return nil, false, fmt.Errorf("not an HTTP answer: %.40q", line)
	}
	resp = &response{status: status}
	reusable = proto == "HTTP/1.1"
	var contentLength, transferEncoding string
	for n := 0; ; n++ {
		line, err := readLine(r)
		if err != nil {
			return nil, false, fmt.Errorf("reading the answer's header: %w", err)
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || n > 100 {
			return nil, false, fmt.Errorf("malformed header line %.40q", line)
		}
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			contentLength = value
		case strings.EqualFold(name, "Transfer-Encoding"):
			transferEncoding = value
		case strings.EqualFold(name, "Connection"):
			if strings.EqualFold(value, "close") {
				reusable = false
			}
		case strings.EqualFold(name, "Retry-After"):
			if secs, err := strconv.Atoi(value); err == nil && secs > 0 && secs <= 1<<31 { // no overflow into a negative wait
				resp.retryAfter = time.Duration(secs) * time.Second
			}
		}
	}
	switch {
	case transferEncoding != "":
		// The agent always sends Content-Length; a chunked (or other
		// coded) body means something else answers on the socket.
		return nil, false, fmt.Errorf("answer with Transfer-Encoding %.20q: the agent sends Content-Length; is a program other than tokenagentd (or a proxy) serving this socket?", transferEncoding)
	case contentLength != "":
		n, perr := strconv.ParseInt(contentLength, 10, 64)
		if perr != nil || n < 0 || n > maxBody {
			return nil, false, fmt.Errorf("answer with Content-Length %.20q", contentLength)
		}
		// Read, not preallocated: memory follows what arrives, not
		// what the header claims.
		resp.body, err = io.ReadAll(io.LimitReader(r, n))
		if err == nil && int64(len(resp.body)) < n {
			err = io.ErrUnexpectedEOF
		}
	default: // the body ends with the connection
		reusable = false
		resp.body, err = io.ReadAll(io.LimitReader(r, maxBody))
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the answer: %w", err)
	}
	return resp, reusable, nil
}

// readLine reads a CRLF- (or LF-) terminated line of at most 2 KiB.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", errors.New("header line over 2 KiB")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}
