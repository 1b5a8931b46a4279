package bearer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenagent/tokenagent/clientlib"
	"github.com/tokenagent/tokenagent/clientlib/bearer"
)

func ExampleTokenSource() {
	var c clientlib.Client
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	defer api.Close()

	httpClient := oauth2.NewClient(context.Background(), bearer.TokenSource(&c, "zeebe"))
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

func ExampleTransport() {
	var c clientlib.Client
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()

	httpClient := &http.Client{Transport: bearer.Transport(&c, "zeebe", nil)}
	resp, err := httpClient.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output: 200
}
