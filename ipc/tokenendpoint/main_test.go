package tokenendpoint

import (
	"fmt"
	"io"
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
	fmt.Printf("%d\n%s", resp.StatusCode, body)
	os.Exit(0)
}
