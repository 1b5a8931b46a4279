// Command countidp is packaging/test-systemd.sh's identity provider:
// agent/idptest's real token endpoint on 127.0.0.1 with the clients named
// on the command line (ID=SECRET, client_secret_basic), and a second
// loopback port that answers GET /requests?client=ID with how many token
// requests that client made, so that the test can show a reload or a
// restart of the service asked the IdP nothing.
//
// It prints one line, "TOKEN_URL COUNT_URL", once both serve, and runs
// until SIGTERM or SIGINT.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "countidp:", err)
		os.Exit(1)
	}
}

func run(clients []string) error {
	if len(clients) == 0 {
		return fmt.Errorf("usage: countidp ID=SECRET...")
	}
	idp := idptest.New()
	defer idp.Close()
	for _, c := range clients {
		id, secret, ok := strings.Cut(c, "=")
		if !ok || id == "" || secret == "" {
			return fmt.Errorf("client %q: want ID=SECRET", c)
		}
		idp.AddClient(idptest.Client{ID: id, Secret: secret, Method: "client_secret_basic"})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, strconv.Itoa(idp.Requests(r.URL.Query().Get("client"))))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	fmt.Printf("%s http://%s/requests\n", idp.TokenURL, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return srv.Close()
}
