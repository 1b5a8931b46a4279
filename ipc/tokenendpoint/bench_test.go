package tokenendpoint_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
)

// BenchmarkEndpointCacheHit is a cache hit at the token endpoint through
// the whole door (TCP identity, guard, form, Match, engine, answer,
// event, log at info), with 1 and with 1,000 profiles visible to the
// caller: the second must cost what the first does.
func BenchmarkEndpointCacheHit(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("profiles=%d", n), func(b *testing.B) {
			var config strings.Builder
			config.WriteString("token_endpoint = \"127.0.0.1:0\"\n")
			for i := range n {
				fmt.Fprintf(&config, "[profiles.p%04d]\ntoken_url = \"IDP\"\nclient_id = \"c\"\nclient_secret = %q\nscopes = [\"s%d\"]\n", i, idpSecret, i)
			}
			r, err := agenttest.StartWith(config.String(), agenttest.Options{Log: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			r.IdP.AddClient(idptest.Client{ID: "c", Secret: idpSecret, Method: "client_secret_basic"})
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"p0000"}, "client_secret": {"unused"}}.Encode()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				hc := &http.Client{Transport: &http.Transport{}}
				for pb.Next() {
					resp, err := hc.Post(r.TokenEndpoint, "application/x-www-form-urlencoded", strings.NewReader(form))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
