package socket

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/switchboard/switchboard/internal/jsonjs"
)

// File modes of the file verb.
const (
	// FileRaw writes the file's bytes as they are, like the reference: no JSON, no delimiter.
	FileRaw = "raw"
	// FileFramed answers with one JSON line a client can parse:
	// {"status":"OK","context":"response","data":{"file","length","encoding":"base64","content"},...}.
	FileFramed = "framed"
)

const msgFileNotFound = "That file is not found"

//lint:ignore ST1005 the reference server's text, which clients compare
var errFileNotFound = errors.New(msgFileNotFound)

// sendFile answers the file verb from the public directory. Paths that leave it (.., absolute, symlinks
// out) are refused exactly like a missing file.
func (c *Conn) sendFile(name string, id msgID, count int64) {
	s := c.srv
	// A file may be larger than socket.max_outbound_bytes, which the outbound queue allows only when
	// nothing else waits in it: wait (this is the connection's reader, so the client's further requests
	// wait too) until what was sent before has gone, for at most the action time limit.
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.ActionTimeout)
	err := c.out.WaitBelow(ctx, 0)
	cancel()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		c.dropSlowReader(0)
		return
	case err != nil:
		return // the connection is closing
	}
	data, err := readPublic(s.cfg.PublicDir, name, s.cfg.FileMaxBytes)
	if err != nil {
		s.metrics.errors.WithLabelValues("file").Inc()
		if !errors.Is(err, errFileNotFound) {
			c.log.WithError(err).WithField("file", name).Info("file verb refused")
		}
		msg := msgFileNotFound
		if errors.Is(err, errFileTooBig) {
			msg = "that file is too big"
		}
		if s.cfg.FileMode == FileFramed {
			_ = c.write(errorReply(msg, id, count))
			return
		}
		_ = c.write(append(jsonjs.AppendString(nil, msg), crlf...))
		return
	}
	if s.cfg.FileMode == FileFramed {
		data := Object{{"file", name}, {"length", len(data)}, {"encoding", "base64"},
			{"content", base64.StdEncoding.EncodeToString(data)}}
		_ = c.write(okReply(data, true, id, count))
		return
	}
	_ = c.write(data)
}

var (
	errFileTooBig = errors.New("file larger than socket.file_max_bytes")
	errNotRegular = errors.New("not a regular file")
)

// readPublic reads dir/name, confined to dir by os.Root (no "..", no absolute path, no symlink out of
// dir). Only regular files are read: a FIFO would block the reading thread until some writer opened it
// (forever, one OS thread per request), a device could be endless or have side effects. The type is
// checked before opening (stat, following symlinks inside dir), the open itself does not wait
// (O_NONBLOCK, and O_NOCTTY so a terminal never becomes the process's), and the opened file is checked
// again (fstat), so a file swapped for a FIFO in between is refused too. At most maxBytes are read.
func readPublic(dir, name string, maxBytes int64) ([]byte, error) {
	if dir == "" || name == "" || strings.ContainsRune(name, 0) {
		return nil, errFileNotFound
	}
	// os.Root refuses escapes too; this keeps "..", absolute and backslash paths out of the logs.
	if path.IsAbs(name) || strings.Contains(name, "..") || strings.ContainsRune(name, '\\') {
		return nil, errFileNotFound
	}
	clean := path.Clean(name)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("socket: public dir: %w", err)
	}
	defer root.Close()
	st, err := root.Stat(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errFileNotFound
		}
		return nil, fmt.Errorf("%w: %v", errFileNotFound, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is %s", errNotRegular, name, fileType(st.Mode()))
	}
	f, err := root.OpenFile(clean, os.O_RDONLY|openNoWait, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errFileNotFound
		}
		return nil, fmt.Errorf("%w: %v", errFileNotFound, err)
	}
	defer f.Close()
	st, err = f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFileNotFound, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is %s", errNotRegular, name, fileType(st.Mode()))
	}
	if maxBytes > 0 && st.Size() > maxBytes {
		return nil, errFileTooBig
	}
	limit := st.Size() + 1
	if maxBytes > 0 && limit > maxBytes+1 {
		limit = maxBytes + 1
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("socket: read %s: %w", name, err)
	}
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return nil, errFileTooBig // it grew while we read
	}
	return data, nil
}

// fileType names a non-regular file's type for the log.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}
