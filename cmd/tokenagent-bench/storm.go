package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenagent/tokenagent/agent/idptest"
)

var (
	stormFor     = flag.Duration("storm", 10*time.Second, "how long the connection storm lasts")
	stormTCP     = flag.Int("storm-tcp", 1200, "storm callers opening a new token-endpoint connection per request")
	stormSocket  = flag.Int("storm-socket", 300, "storm callers on the socket (keep-alive)")
	stormProcs   = flag.Int("storm-procs", 1, "processes the storm's TCP callers are spread over")
	stormSettle  = flag.Duration("storm-settle", 30*time.Second, "how long after the storm the agent's RSS is read again")
	stormPeakMiB = flag.Int("storm-peak", 100, "the storm's peak-RSS target in MiB (the section fails above it)")
	stormRestMiB = flag.Int("storm-rest", 50, "the storm's RSS target in MiB once it has settled")
)

// storm runs the real agent (tokenagentd, its defaults) with 500 profiles
// holding tokens, and then, for -storm, -storm-tcp callers that each open
// a new loopback TCP connection per token-endpoint request and
// -storm-socket callers on the socket; it reads the agent's RSS every
// 50 ms during the storm and -storm-settle after it.
func storm(work string) error {
	const nProfiles = 500
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	dir := filepath.Join(work, "storm")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	endpoint, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	config := filepath.Join(dir, "agent.toml")
	// The TCP callers run as another uid (stormUID), as most callers
	// are: the agent then identifies each connection's process, the
	// work that ballooned memory under a storm (issue 23).
	// max_connections_per_uid lets every caller in at once (the default,
	// 128, would turn most away with 503 and spare the agent the storm).
	body := fmt.Sprintf("store = \"memory\"\ntoken_endpoint = %q\nmax_connections_per_uid = 2048\n", endpoint) + strings.ReplaceAll(profiles(nProfiles, "s"), "IDP", idp.TokenURL)
	if os.Geteuid() == 0 {
		body = strings.ReplaceAll(body, "scopes = ", fmt.Sprintf("allow_uids = [0, %d]\nscopes = ", stormUID))
	}
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		return err
	}
	socket := filepath.Join(dir, "agent.sock")
	daemonBin, err := buildCommand(work, "tokenagentd")
	if err != nil {
		return err
	}
	cmd := exec.Command(daemonBin, "--config", config, "--socket", socket)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	hc := unixClient(socket, true, *stormSocket)
	if err := waitHealthy(hc); err != nil {
		return err
	}
	for i := range nProfiles {
		if err := get(hc, fmt.Sprintf("http://tokenagent/v1/tokens/s%04d", i)); err != nil {
			return fmt.Errorf("warming profile s%04d: %w", i, err)
		}
	}
	before, err := vmRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}

	var served, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	client, err := buildProgram(work, "storm-client", stormClient)
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(work, 0o711); err != nil { // the callers' uid runs a program in it
			return err
		}
	}
	var callers []*exec.Cmd
	var outs []*strings.Builder
	defer func() {
		for _, c := range callers {
			c.Process.Kill()
			c.Wait()
		}
	}()
	for p := range *stormProcs {
		n := *stormTCP / *stormProcs
		if p < *stormTCP%*stormProcs {
			n++
		}
		c := exec.Command(client, "http://"+endpoint+"/oauth2/token", strconv.Itoa(n), strconv.Itoa(nProfiles), stormFor.String())
		if os.Geteuid() == 0 {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: stormUID, Gid: stormUID}}
		}
		out := new(strings.Builder)
		c.Stdout = out // net/http's complaints on stderr are not the tally
		if err := c.Start(); err != nil {
			return fmt.Errorf("storm callers: %w", err)
		}
		callers, outs = append(callers, c), append(outs, out)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range *stormSocket {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := get(hc, fmt.Sprintf("http://tokenagent/v1/tokens/s%04d", i%nProfiles)); err != nil {
					fail(err)
					continue
				}
				served.Add(1)
			}
		})
	}
	peak := before
	end := time.Now().Add(*stormFor)
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		if rss, err := vmRSS(cmd.Process.Pid); err == nil {
			peak = max(peak, rss)
		}
	}
	close(stop)
	wg.Wait()
	for i, c := range callers {
		if err := c.Wait(); err != nil {
			return fmt.Errorf("storm callers: %v: %s", err, outs[i])
		}
		var ok, bad int64
		fmt.Sscanf(outs[i].String(), "%d %d", &ok, &bad)
		served.Add(ok)
		failed.Add(bad)
		if _, e, found := strings.Cut(strings.TrimSpace(outs[i].String()), "\n"); found {
			firstErr.CompareAndSwap(nil, errors.New(e))
		}
	}
	callers = nil
	if rss, err := vmRSS(cmd.Process.Pid); err == nil {
		peak = max(peak, rss)
	}
	hc.CloseIdleConnections()
	time.Sleep(*stormSettle)
	after, err := vmRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}
	if err := get(unixClient(socket, false, 1), "http://tokenagent/v1/tokens/s0000"); err != nil {
		return fmt.Errorf("the agent after the storm: %w", err)
	}

	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Println("## Memory under a connection storm")
	fmt.Println()
	fmt.Printf("The real agent (tokenagentd, default settings but max_connections_per_uid = 2048, which lets every caller in) with %d profiles holding tokens; for %v, %d callers (in %d processes, as another uid when run as root, so that the agent identifies each connection's process) each opening a new loopback TCP connection per `POST /oauth2/token`, and %d keep-alive callers on the socket. RSS read every 50 ms.\n\n", nProfiles, *stormFor, *stormTCP, *stormProcs, *stormSocket)
	fmt.Println("| callers (TCP new-conn + socket) | requests served | failed | RSS before | peak RSS | RSS after |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| %d + %d | %d | %d | %.1f MiB | %.1f MiB | %.1f MiB (%v later) |\n\n", *stormTCP, *stormSocket, served.Load(), failed.Load(), mib(before), mib(peak), mib(after), *stormSettle)
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Printf("First failure: %v\n\n", err)
	}
	var errs []error
	if peak > int64(*stormPeakMiB)<<20 {
		errs = append(errs, fmt.Errorf("peak RSS %.1f MiB over the %d MiB target (docs/benchmarks.md)", mib(peak), *stormPeakMiB))
	}
	if after > int64(*stormRestMiB)<<20 {
		errs = append(errs, fmt.Errorf("RSS %.1f MiB %v after the storm, over the %d MiB target (docs/benchmarks.md)", mib(after), *stormSettle, *stormRestMiB))
	}
	if served.Load() == 0 {
		errs = append(errs, errors.New("no request served during the storm"))
	}
	return errors.Join(errs...)
}

// waitHealthy waits until the agent's socket answers /v1/health.
func waitHealthy(hc *http.Client) error {
	for range 500 {
		if resp, err := hc.Get("http://tokenagent/v1/health"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("agent did not come up")
}

// stormUID is the uid of the storm's TCP callers when the bench runs as
// root: a user with no entry in /etc/passwd, as a service's is.
const stormUID = 4242

// stormClient is the storm's TCP callers, a process of their own: n
// goroutines, each POSTing to the token endpoint on a new connection per
// request, until the duration ends; it prints "served failed" and the
// first error.
const stormClient = `package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	endpoint := os.Args[1]
	callers, _ := strconv.Atoi(os.Args[2])
	profiles, _ := strconv.Atoi(os.Args[3])
	d, _ := time.ParseDuration(os.Args[4])
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var served, failed atomic.Int64
	var first atomic.Value
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(end); i++ {
				form := url.Values{"grant_type": {"client_credentials"}, "client_id": {fmt.Sprintf("s%04d", i%profiles)}, "client_secret": {"unused"}}.Encode()
				resp, err := hc.Post(endpoint, "application/x-www-form-urlencoded", strings.NewReader(form))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				served.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Println(served.Load(), failed.Load())
	if e, ok := first.Load().(string); ok {
		fmt.Println(e)
	}
}
`
