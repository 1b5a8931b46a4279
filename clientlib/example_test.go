package clientlib_test

import (
	"context"
	"errors"
	"fmt"

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

// A profile that does not exist and one the caller may not use get the
// same answer, so that nobody can learn the names of other users'
// profiles by asking.
func ExampleErrUnknownProfile() {
	var c clientlib.Client
	_, err := c.Token(context.Background(), "no-such-profile")
	var e *clientlib.Error
	fmt.Println(errors.Is(err, clientlib.ErrUnknownProfile), errors.As(err, &e) && e.Code == "unknown_profile")
	// Output: true true
}

// An API refused a token: report it, and retry with what the agent
// returns — a new token when the refused one was current.
func ExampleClient_ReportRejected() {
	var c clientlib.Client
	ctx := context.Background()
	tok, err := c.Token(ctx, "rejected")
	if err != nil {
		fmt.Println("no token:", err)
		return
	}
	// … the API answered 401 to tok …
	fresh, err := c.ReportRejected(ctx, "rejected", tok.AccessToken)
	if err != nil {
		fmt.Println("no token:", err)
		return
	}
	fmt.Println(fresh.AccessToken != tok.AccessToken)
	// Output: true
}

func ExampleClient_Health() {
	var c clientlib.Client
	h, err := c.Health(context.Background())
	if err != nil {
		fmt.Println("agent not well:", err)
		return
	}
	fmt.Println(h.Status, h.Store.State)
	// Output: ok memory
}
