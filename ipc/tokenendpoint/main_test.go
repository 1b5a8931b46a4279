package tokenendpoint

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestMain doubles as a TCP client run as another user (see postAs).
func TestMain(m *testing.M) {
	if target := os.Getenv("TOKENENDPOINT_TEST_POST"); target != "" {
		postAndPrint(target, os.Getenv("TOKENENDPOINT_TEST_FORM"))
		return
	}
	if addr := os.Getenv("TOKENENDPOINT_TEST_HANG_UP"); addr != "" {
		postAndHangUp(addr, os.Getenv("TOKENENDPOINT_TEST_FORM"))
		return
	}
	os.Exit(m.Run())
}

// postAndPrint is the child of postAs: one POST, then the status and body.
func postAndPrint(target, form string) {
	resp, err := http.Post(target, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		fmt.Println("0")
		fmt.Println(err)
		os.Exit(0)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d\n%t\n%s", resp.StatusCode, resp.Close, body)
	os.Exit(0)
}

// postAndHangUp is the child of hangUpAs: it sends a token request to
// addr and closes its socket without waiting for the answer.
func postAndHangUp(addr, form string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "POST /oauth2/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", addr, len(form), form)
	c.Close()
	os.Exit(0)
}
