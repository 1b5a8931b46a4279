package clientlib_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenagent/tokenagent/clientlib"
)

func ExampleClient_Token() {
	var c clientlib.Client // finds the agent through $TOKENAGENT_SOCKET or the default socket
	tok, err := c.Token(context.Background(), "zeebe")
	if err != nil {
		fmt.Println("no token:", err)
		return
	}
	fmt.Println(tok.TokenType, len(tok.AccessToken) > 0)
	// Output: Bearer true
}

func ExampleClient_TokenSource() {
	var c clientlib.Client
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	defer api.Close()

	httpClient := oauth2.NewClient(context.Background(), c.TokenSource("zeebe"))
	resp, err := httpClient.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var authorized string
	fmt.Fscan(resp.Body, &authorized)
	fmt.Println(resp.StatusCode, authorized)
	// Output: 200 true
}

func ExampleClient_Transport() {
	var c clientlib.Client
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()

	httpClient := &http.Client{Transport: c.Transport("zeebe", nil)}
	resp, err := httpClient.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output: 200
}
