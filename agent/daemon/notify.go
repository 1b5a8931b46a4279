package daemon

import (
	"net"
	"os"
)

// sdNotify sends a state line ("READY=1", "RELOADING=1", "STOPPING=1") to
// systemd when it started us with Type=notify; without NOTIFY_SOCKET it
// does nothing. (The protocol is one datagram; no library needed.)
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract namespace
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
