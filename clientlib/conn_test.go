package clientlib

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
		body     string
		reusable bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", true, "{}", true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", true, "{}", false},
		{"until eof", "HTTP/1.0 200 OK\r\n\r\n{}", true, "{}", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false, "", false},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", false, "", false},
		{"huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{}", false, "", false},
		{"not http", "SSH-2.0-OpenSSH\r\n", false, "", false},
	} {
		resp, reusable, err := readResponse(bufio.NewReaderSize(strings.NewReader(c.in), 2048))
		switch {
		case (err == nil) != c.ok:
			t.Errorf("%s: readResponse(%q) error = %v, want ok %v", c.name, c.in, err, c.ok)
		case c.ok && (string(resp.body) != c.body || reusable != c.reusable):
			t.Errorf("%s: readResponse(%q) = %q, reusable %v; want %q, %v", c.name, c.in, resp.body, reusable, c.body, c.reusable)
		}
	}
	_, _, err := readResponse(bufio.NewReaderSize(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 2048))
	if err == nil || !strings.Contains(err.Error(), "Content-Length") {
		t.Errorf("a chunked answer: %v; want an error that says the agent sends Content-Length", err)
	}
}

// FuzzReadResponse: whatever arrives on the socket, readResponse returns
// an answer or an error, never panics, and holds no more than arrived
// (and no more than maxBody) whatever the headers claim.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nRetry-After: 3\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 12\r\n\r\n{\"error\":\"idp_unavailable\"}"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody until eof"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\nx"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, _, err := readResponse(bufio.NewReaderSize(bytes.NewReader(data), 2048))
		if err != nil {
			return
		}
		if len(resp.body) > len(data) || len(resp.body) > maxBody {
			t.Fatalf("body of %d bytes from %d bytes of input", len(resp.body), len(data))
		}
		if resp.status < 100 || resp.status > 999 || resp.retryAfter < 0 {
			t.Fatalf("status %d, Retry-After %v", resp.status, resp.retryAfter)
		}
		if !bytes.Contains(data, resp.body) {
			t.Fatalf("body %q is not in the input", resp.body)
		}
	})
}
