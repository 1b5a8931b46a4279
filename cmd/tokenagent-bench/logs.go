package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

var logRequests = flag.Int("log-requests", 1_000_000, "requests per log-volume run (logs section)")

// lineCounter counts the lines and bytes written to it.
type lineCounter struct {
	lines, bytes atomic.Int64
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines.Add(int64(bytes.Count(p, []byte("\n"))))
	c.bytes.Add(int64(len(p)))
	return len(p), nil
}

// logVolume runs the real agent (tokenagentd, its log to a pipe as under
// systemd) and sends it -log-requests requests: 80 % tokens served over
// the socket, 10 % a caller looping on a client_id it may not use at the
// token endpoint (a denial each), 10 % guessed profile names (404) — at
// log_level info (the default), info with audit_log, and debug. It
// reports the log's lines and bytes per million requests, and the audit
// log's.
func logVolume(work string) error {
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	daemonBin, err := buildCommand(work, "tokenagentd")
	if err != nil {
		return err
	}
	n := *logRequests
	fmt.Println("## Log volume")
	fmt.Println()
	fmt.Printf("The real agent (tokenagentd, JSON log to a pipe) answers %d requests from 16 clients: 80 %% tokens served on the socket, 10 %% denials (a caller looping on a client_id it may not use at the token endpoint), 10 %% unknown profiles (50 guessed names). Per million requests:\n\n", n)
	fmt.Println("| log_level | log lines | log bytes | audit lines | audit bytes | req/s |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, run := range []struct {
		level string
		audit bool
	}{{"info", false}, {"info", true}, {"debug", false}} {
		dir := filepath.Join(work, "logs-"+run.level+fmt.Sprint(run.audit))
		os.MkdirAll(dir, 0o700)
		res, err := logRun(daemonBin, idp.TokenURL, dir, run.level, run.audit, n)
		if err != nil {
			return fmt.Errorf("log_level %s: %w", run.level, err)
		}
		name := run.level
		if run.audit {
			name += " + audit_log"
		}
		per := 1e6 / float64(n)
		audit := "off | off"
		if run.audit {
			audit = fmt.Sprintf("%.0f | %s", float64(res.auditLines)*per, size(float64(res.auditBytes)*per))
		}
		fmt.Printf("| %s | %.0f | %s | %s | %.0f |\n", name, float64(res.lines)*per, size(float64(res.bytes)*per), audit, res.rps)
		if run.level == "info" && res.lines >= logLinesTarget {
			return fmt.Errorf("%d requests at log_level info wrote %d log lines; the target is under %d (docs/benchmarks.md)", n, res.lines, logLinesTarget)
		}
	}
	fmt.Println()
	return nil
}

// logLinesTarget bounds the lines the default level may write for a run
// (issue 23: under 1,000 for 1,000,000 requests).
const logLinesTarget = 1000

type logResult struct {
	lines, bytes, auditLines, auditBytes int64
	rps                                  float64
}

func logRun(daemonBin, tokenURL, dir, level string, audit bool, n int) (logResult, error) {
	port, err := freePort()
	if err != nil {
		return logResult{}, err
	}
	config, socket, auditPath := filepath.Join(dir, "agent.toml"), filepath.Join(dir, "agent.sock"), filepath.Join(dir, "audit.log")
	text := fmt.Sprintf("store = \"memory\"\nlog_level = %q\ntoken_endpoint = \"127.0.0.1:%d\"\n", level, port)
	if audit {
		text += fmt.Sprintf("audit_log = %q\n", auditPath)
	}
	text += fmt.Sprintf("[profiles.p]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n", tokenURL)
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		return logResult{}, err
	}
	var log lineCounter
	cmd := exec.Command(daemonBin, "--config", config, "--socket", socket)
	cmd.Stderr, cmd.Stdout = &log, &log
	if err := cmd.Start(); err != nil {
		return logResult{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sock := unixClient(socket, true, 16)
	for i := 0; ; i++ { // until the socket answers
		if resp, err := sock.Get("http://tokenagent/v1/health"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 500 {
			return logResult{}, errors.New("agent did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/oauth2/token", port)
	denied := "grant_type=client_credentials&client_id=not-yours&client_secret=x"
	tcp := tcpClient(true, 16)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				var err error
				switch i % 10 {
				case 0:
					err = wantStatus(tcp.Post(endpoint, "application/x-www-form-urlencoded", strings.NewReader(denied)))(401)
				case 1:
					err = wantStatus(sock.Get(fmt.Sprintf("http://tokenagent/v1/tokens/guess%d", i%50)))(404)
				default:
					err = wantStatus(sock.Get("http://tokenagent/v1/tokens/p"))(200)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return logResult{}, err
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return logResult{}, fmt.Errorf("tokenagentd after SIGTERM: %w", err)
	}
	res := logResult{lines: log.lines.Load(), bytes: log.bytes.Load(), rps: float64(n) / elapsed.Seconds()}
	if audit {
		data, err := os.ReadFile(auditPath)
		if err != nil {
			return res, err
		}
		res.auditLines, res.auditBytes = int64(bytes.Count(data, []byte("\n"))), int64(len(data))
		if served := int64(n) - int64(n+9)/10 - int64(n+8)/10; res.auditLines != served {
			return res, fmt.Errorf("%d tokens served, %d audit lines: want one each", served, res.auditLines)
		}
	}
	return res, nil
}

// wantStatus reads and closes a response and wants status code.
func wantStatus(resp *http.Response, err error) func(code int) error {
	return func(code int) error {
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code {
			return fmt.Errorf("%s: status %d, want %d", resp.Request.URL.Path, resp.StatusCode, code)
		}
		return nil
	}
}

// freePort is a loopback TCP port free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// size is a byte count in kB or MB.
func size(b float64) string {
	if b < 1e6 {
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.1f MB", b/1e6)
}
