// Package sdnotify tells systemd how the service is doing, the way sd_notify(3) does: READY=1 once every
// listener is open, RELOADING=1 while a reload runs, STOPPING=1 when shutdown begins, each with a STATUS=
// line that `systemctl status` shows. A message is one datagram on the unix socket named by $NOTIFY_SOCKET,
// which systemd sets for a Type=notify unit. Without that variable every method does nothing, so the same
// binary runs unchanged in a terminal, a container or a test.
package sdnotify

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// writeTimeout bounds one send: a datagram blocks only while the receiver's queue is full, and a service
// manager that stopped reading must not stall a reload or a shutdown.
const writeTimeout = time.Second

// Notifier sends state changes to the service manager. A nil *Notifier does nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for socket, the value of $NOTIFY_SOCKET: an absolute path, or a name in Linux's
// abstract namespace written with a leading '@'. An empty socket (not run by systemd) returns nil, a
// Notifier that does nothing.
func New(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return nil, nil
	case strings.HasPrefix(socket, "/"), len(socket) > 1 && socket[0] == '@':
		// Go's net package maps a leading '@' to the abstract namespace, as systemd means it.
		return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
	default:
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: expected an absolute path or an @abstract name", socket)
	}
}

// Ready says the service is up and serving (startup done, or a reload finished).
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+oneLine(status))
}

// Reloading says a reload has begun; Ready ends it. MONOTONIC_USEC lets a Type=notify-reload unit
// (systemd 253 and later) match the message to the reload it asked for.
func (n *Notifier) Reloading(status string) error {
	fields := []string{"RELOADING=1"}
	if usec, ok := monotonicUsec(); ok {
		fields = append(fields, "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
	}
	return n.Send(append(fields, "STATUS="+oneLine(status))...)
}

// Stopping says shutdown has begun.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", "STATUS="+oneLine(status))
}

// Send sends fields, each KEY=VALUE without a newline, as one message.
func (n *Notifier) Send(fields ...string) error {
	if n == nil {
		return nil
	}
	for _, f := range fields {
		if !strings.Contains(f, "=") || strings.Contains(f, "\n") {
			return fmt.Errorf("sdnotify: %q: expected KEY=VALUE on one line", f)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	err = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err == nil {
		_, err = conn.Write([]byte(strings.Join(fields, "\n")))
	}
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// oneLine keeps a status to a single line, since a newline would start another assignment.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
