package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/agent/agenttest"
	"github.com/tokenagent/tokenagent/agent/idptest"
	"github.com/tokenagent/tokenagent/ipc"
)

// startAgent runs an in-process agent for config that logs as
// tokenagentd does (JSON at the config's log_level, info by default) to
// /dev/null: a log line per request costs here what it costs in
// production, bar the pipe.
func startAgent(config string) (*agenttest.Running, error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	r, err := agenttest.StartWith(config, agenttest.Options{Log: null})
	if err != nil {
		null.Close()
		return nil, err
	}
	r.IdP.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	return r, nil
}

// endpointScale measures the token endpoint's cache hit with 1,000
// profiles visible to the caller beside the same with one profile,
// interleaved: matching a client_id must not cost per profile.
func endpointScale() error {
	one, err := startAgent("token_endpoint = \"127.0.0.1:0\"\n" + profiles(1, "p"))
	if err != nil {
		return err
	}
	defer one.Close()
	many, err := startAgent("token_endpoint = \"127.0.0.1:0\"\n" + profiles(1000, "p"))
	if err != nil {
		return err
	}
	defer many.Close()
	_, post := tokenPost("p0000")
	for _, u := range []string{one.TokenEndpoint, many.TokenEndpoint} {
		if err := post(http.DefaultClient, u); err != nil {
			return fmt.Errorf("first token at %s: %w", u, err)
		}
	}
	fmt.Println("## Token endpoint: 1,000 profiles against 1")
	fmt.Println()
	fmt.Println("A cache hit at `POST /oauth2/token` on an agent with 1,000 profiles, all visible to the caller (root), beside the same on an agent with 1 profile; both log as tokenagentd does (info, JSON); they alternate in 20 rounds.")
	fmt.Println()
	fmt.Println("| mode | 1,000 profiles p50 | req/s | 1 profile p50 | req/s | p50 ratio | req/s ratio |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, m := range []struct {
		name    string
		clients int
	}{{"keep-alive, 1 client", 1}, {"keep-alive, 64 concurrent clients", 64}} {
		hcMany, hcOne := tcpClient(true, m.clients), tcpClient(true, m.clients)
		a, b, err := interleaved(func() error { return post(hcMany, many.TokenEndpoint) }, func() error { return post(hcOne, one.TokenEndpoint) }, *requests, m.clients, 20)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %v | %.0f | %v | %.0f | %.2f | %.2f |\n", m.name, us(a.p50), a.rps, us(b.p50), b.rps, float64(a.p50)/float64(b.p50), a.rps/b.rps)
	}
	fmt.Println()
	return nil
}

// floorServer is the out-of-process floor: a bare net/http server that
// answers every request with the bytes of a file, on a Unix socket or a
// TCP address.
const floorServer = `package main

import (
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	body, err := os.ReadFile(os.Args[3])
	if err != nil {
		os.Exit(1)
	}
	ln, err := net.Listen(os.Args[1], os.Args[2])
	if err != nil {
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	}))
}
`

// buildProgram builds a one-file Go program as the packages build
// commands (static, stripped).
func buildProgram(work, name, source string) (string, error) {
	bin := filepath.Join(work, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	dir := filepath.Join(work, name+"-src")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644)
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// startFloor runs the floor server on network/addr answering body.
func startFloor(bin, dir, network, addr string, body []byte) (stop func(), pid int, err error) {
	file := filepath.Join(dir, fmt.Sprintf("floor-body-%d", time.Now().UnixNano()))
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, network, addr, file)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, 0, fmt.Errorf("floor server on %s did not start", addr)
	}
	return func() { cmd.Process.Kill(); cmd.Wait() }, cmd.Process.Pid, nil
}

// freeLoopbackPort is a port nobody listens on now.
func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// outside measures as a user would: tokenagentd and the floors are
// processes of their own (built static and stripped), logging as in
// production (info, JSON, to a pipe this tool drains); the clients are
// this process. Socket and token endpoint cache hits beside a bare
// net/http server on a socket in the same directory and on loopback TCP,
// then the cold CLI beside a static client, against this daemon.
func outside(work string) error {
	dir := filepath.Join(work, "outside")
	os.MkdirAll(dir, 0o700)
	idp := idptest.New()
	defer idp.Close()
	idp.AddClient(idptest.Client{ID: "c", Secret: "bench-secret", Method: "client_secret_basic"})
	endpoint, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	config := filepath.Join(dir, "agent.toml")
	os.WriteFile(config, []byte(fmt.Sprintf("store = \"memory\"\ntoken_endpoint = %q\n[profiles.bench]\ntoken_url = %q\nclient_id = \"c\"\nclient_secret = \"bench-secret\"\n", endpoint, idp.TokenURL)), 0o600)
	socket := filepath.Join(dir, "agent.sock")
	daemonBin, err := buildCommand(work, "tokenagentd")
	if err != nil {
		return err
	}
	floorBin, err := buildProgram(work, "floor-server", floorServer)
	if err != nil {
		return err
	}
	cmd := exec.Command(daemonBin, "--config", config, "--socket", socket)
	logs, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	go io.Copy(io.Discard, logs)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tokenURL := "http://" + ipc.Host + "/v1/tokens/bench"
	var body []byte
	for i := 0; ; i++ { // until the socket answers, with the first token
		resp, err := unixClient(socket, false, 1).Get(tokenURL)
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 500 {
			return errors.New("tokenagentd did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	floorSock := filepath.Join(dir, "floor.sock")
	stop, floorPid, err := startFloor(floorBin, dir, "unix", floorSock, body)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Println("## From outside: tokenagentd and its floors as processes")
	fmt.Println()
	fmt.Println("`tokenagentd` (static, logging at info as JSON to a pipe) and a bare `net/http` server (static) each in a process of its own, the clients in the bench's; agent and floor alternate in 20 rounds.")
	fmt.Println()
	fmt.Println("### Socket cache hit (`GET /v1/tokens/bench`; floor: a socket in the same directory)")
	fmt.Println()
	err = floorTable(
		func(keepAlive bool, clients int) func() error {
			hc := unixClient(socket, keepAlive, clients)
			return func() error { return get(hc, tokenURL) }
		},
		func(keepAlive bool, clients int) func() error {
			hc := unixClient(floorSock, keepAlive, clients)
			return func() error { return get(hc, tokenURL) }
		})
	if err != nil {
		return err
	}
	hcAgent, hcFloor := unixClient(socket, true, 64), unixClient(floorSock, true, 64)
	if err := serverCPU(cmd.Process.Pid, floorPid, func() error { return get(hcAgent, tokenURL) }, func() error { return get(hcFloor, tokenURL) }); err != nil {
		return err
	}
	fmt.Println()

	form, post := tokenPost("bench")
	agentEndpoint := "http://" + endpoint + "/oauth2/token"
	resp, err := http.Post(agentEndpoint, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		return err
	}
	endpointBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	floorAddr, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	stopTCP, floorTCPPid, err := startFloor(floorBin, dir, "tcp", floorAddr, endpointBody)
	if err != nil {
		return err
	}
	defer stopTCP()
	fmt.Println("### Token endpoint cache hit (`POST /oauth2/token`; floor: loopback TCP)")
	fmt.Println()
	err = floorTable(
		func(keepAlive bool, clients int) func() error {
			hc := tcpClient(keepAlive, clients)
			return func() error { return post(hc, agentEndpoint) }
		},
		func(keepAlive bool, clients int) func() error {
			hc := tcpClient(keepAlive, clients)
			return func() error { return post(hc, "http://"+floorAddr+"/oauth2/token") }
		})
	if err != nil {
		return err
	}
	tcpAgent, tcpFloor := tcpClient(true, 64), tcpClient(true, 64)
	if err := serverCPU(cmd.Process.Pid, floorTCPPid, func() error { return post(tcpAgent, agentEndpoint) },
		func() error { return post(tcpFloor, "http://"+floorAddr+"/oauth2/token") }); err != nil {
		return err
	}
	fmt.Println()
	if err := coldCLIOn(work, socket, "### "); err != nil {
		return err
	}
	if n := idp.TotalRequests(); n != 1 {
		return fmt.Errorf("IdP requests during the outside runs = %d, want 1", n)
	}
	return nil
}

// serverCPU prints what each server process spends, in CPU time, per
// request at 64 keep-alive clients, alternating in 20
// rounds: unlike throughput on a shared 2-CPU machine, it does not count
// the clients' CPU or what else runs.
func serverCPU(agentPid, floorPid int, agent, floor func() error) error {
	var cpu [2]time.Duration
	n := *requests
	for range 20 {
		for i, side := range []struct {
			pid int
			do  func() error
		}{{agentPid, agent}, {floorPid, floor}} {
			before, err := processCPU(side.pid)
			if err != nil {
				return err
			}
			if _, _, err := timeCalls(side.do, n/20, 64); err != nil {
				return err
			}
			after, err := processCPU(side.pid)
			if err != nil {
				return err
			}
			cpu[i] += after - before
		}
	}
	a, f := cpu[0]/time.Duration(n), cpu[1]/time.Duration(n)
	fmt.Printf("\nServer CPU per request at 64 keep-alive clients (scheduler time of each process, %d requests each, alternating): agent %v, floor %v, ratio %.2f.\n", n, us(a), us(f), float64(a)/float64(f))
	return nil
}

// processCPU is the CPU time a process's threads have run so far, in
// nanoseconds from the scheduler (/proc/PID/task/*/schedstat), not in
// clock ticks.
func processCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no schedstat for pid %d: %v", pid, err)
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
