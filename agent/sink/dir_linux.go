package sink

import "golang.org/x/sys/unix"

// pathOnly opens a directory on the way to the sink's only to walk and
// fstat it: no read permission needed (a 0711 home directory).
const pathOnly = unix.O_PATH
