package clientlib_test

import (
	"context"
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
