package relay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Journal is the guaranteed-mode store-and-forward log: append-only segment
// files of records, each [len u32][crc32c u32][index u64][centers u64][line].
// Appends are made durable by one writer goroutine that writes everything
// queued and fsyncs once (group commit). Each center has a cursor file
// holding the index of the next record it has not yet acknowledged.
type Journal struct {
	dir     string
	segSize int64

	mu       sync.Mutex
	pending  []byte // encoded records waiting for the writer
	spare    []byte
	lastIdx  uint64 // last index handed out
	durable  uint64 // last index on disk
	durCh    chan struct{}
	wake     chan struct{}
	err      error
	segments []segment // sorted by base
	cursors  map[string]uint64
	closed   bool

	f       *os.File // current segment
	size    int64
	stopped chan struct{}
	segGen  atomic.Uint64 // bumped when a segment starts (readers re-check their position)

	// OnSync, when set before the first Append, is told how long each group
	// commit's fsync took and how many bytes it made durable.
	OnSync func(d time.Duration, bytes int)
}

type segment struct {
	base uint64 // first index in the segment
	path string
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const recHeader = 4 + 4 + 8 + 8

// ErrJournalClosed is returned by appends after Close.
var ErrJournalClosed = errors.New("relay: journal closed")

// OpenJournal opens (or creates) the journal in dir, truncating a torn tail
// left by a crash, and starts its writer.
func OpenJournal(dir string, segSize int64) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("relay: journal %s: %w", dir, err)
	}
	j := &Journal{dir: dir, segSize: segSize, durCh: make(chan struct{}), wake: make(chan struct{}, 1),
		cursors: map[string]uint64{}, stopped: make(chan struct{})}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("relay: journal %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".seg"); ok {
			b, err := strconv.ParseUint(base, 10, 64)
			if err == nil {
				j.segments = append(j.segments, segment{base: b, path: filepath.Join(dir, name)})
			}
		}
		if c, ok := strings.CutPrefix(name, "cursor."); ok {
			raw, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil && len(raw) == 8 {
				j.cursors[c] = binary.BigEndian.Uint64(raw)
			}
		}
	}
	sort.Slice(j.segments, func(a, b int) bool { return j.segments[a].base < j.segments[b].base })
	if len(j.segments) == 0 {
		if err := j.newSegment(1); err != nil {
			return nil, err
		}
		j.lastIdx = 0
	} else {
		last := j.segments[len(j.segments)-1]
		n, good, err := scanSegment(last.path, last.base)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(last.path, os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("relay: journal: %w", err)
		}
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("relay: journal: truncate torn tail: %w", err)
		}
		if _, err := f.Seek(good, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("relay: journal: %w", err)
		}
		j.f, j.size = f, good
		j.lastIdx = last.base + n - 1
	}
	j.durable = j.lastIdx
	go j.run()
	return j, nil
}

// scanSegment counts the valid records of a segment and returns the offset
// after the last valid one.
func scanSegment(path string, base uint64) (n uint64, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("relay: journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var hdr [recHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return n, good, nil
		}
		l := binary.BigEndian.Uint32(hdr[0:4])
		if l > 1<<26 {
			return n, good, nil
		}
		if cap(buf) < int(l) {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := io.ReadFull(r, buf); err != nil {
			return n, good, nil
		}
		crc := crc32.Update(crc32.Checksum(hdr[8:], crcTable), crcTable, buf)
		if crc != binary.BigEndian.Uint32(hdr[4:8]) || binary.BigEndian.Uint64(hdr[8:16]) != base+n {
			return n, good, nil
		}
		n++
		good += int64(recHeader) + int64(l)
	}
}

func (j *Journal) newSegment(base uint64) error {
	path := filepath.Join(j.dir, fmt.Sprintf("%020d.seg", base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("relay: journal: new segment: %w", err)
	}
	if d, err := os.Open(j.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size = f, 0
	j.segments = append(j.segments, segment{base: base, path: path})
	j.segGen.Add(1)
	return nil
}

// Append queues one record for centers and returns its index; the record is
// durable once Durable() >= index (see WaitDurable).
func (j *Journal) Append(centers CenterSet, line []byte) (uint64, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, ErrJournalClosed
	}
	if j.err != nil {
		err := j.err
		j.mu.Unlock()
		return 0, err
	}
	j.lastIdx++
	idx := j.lastIdx
	// the header is built in place (a local array would escape through crc32)
	start := len(j.pending)
	j.pending = binary.BigEndian.AppendUint32(j.pending, uint32(len(line)))
	j.pending = binary.BigEndian.AppendUint32(j.pending, 0) // crc, below
	j.pending = binary.BigEndian.AppendUint64(j.pending, idx)
	j.pending = binary.BigEndian.AppendUint64(j.pending, uint64(centers))
	j.pending = append(j.pending, line...)
	rec := j.pending[start:]
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], crcTable))
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return idx, nil
}

// Durable returns the last durable index and a channel closed when it moves.
func (j *Journal) Durable() (uint64, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable, j.durCh
}

// WaitDurable blocks until idx is on disk, the journal fails, or ctx ends.
func (j *Journal) WaitDurable(ctx context.Context, idx uint64) error {
	_, err := j.waitDurable(ctx, idx)
	return err
}

// waitDurable is WaitDurable also returning the durable index it saw (>= idx).
func (j *Journal) waitDurable(ctx context.Context, idx uint64) (uint64, error) {
	for {
		j.mu.Lock()
		d, ch, err := j.durable, j.durCh, j.err
		j.mu.Unlock()
		if d >= idx {
			return d, nil
		}
		if err != nil {
			return 0, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (j *Journal) run() {
	defer close(j.stopped)
	for {
		<-j.wake
		for {
			j.mu.Lock()
			buf, last, closed := j.pending, j.lastIdx, j.closed
			if len(buf) > 0 {
				j.pending, j.spare = j.spare[:0], nil // two buffers alternate; never alias them
			}
			j.mu.Unlock()
			if len(buf) == 0 {
				if closed {
					return
				}
				break
			}
			err := j.write(buf, last)
			j.mu.Lock()
			j.spare = buf[:0]
			if err != nil && j.err == nil {
				j.err = err
			}
			if err == nil {
				j.durable = last
			}
			close(j.durCh)
			j.durCh = make(chan struct{})
			j.mu.Unlock()
		}
	}
}

// write appends buf (whole records ending at index last) and fsyncs,
// rolling to a new segment first when the current one is full.
func (j *Journal) write(buf []byte, last uint64) error {
	if j.size >= j.segSize {
		first := binary.BigEndian.Uint64(buf[8:16])
		j.mu.Lock()
		err := j.newSegment(first)
		j.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("relay: journal: write: %w", err)
	}
	j.size += int64(len(buf))
	start := time.Now()
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("relay: journal: fsync: %w", err)
	}
	if j.OnSync != nil {
		j.OnSync(time.Since(start), len(buf))
	}
	return nil
}

// Cursor returns the next index center has not acknowledged (1 = from the
// oldest record still kept).
func (j *Journal) Cursor(center string) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	c, ok := j.cursors[center]
	if !ok || c < j.segments[0].base {
		return j.segments[0].base
	}
	return c
}

// SetCursor records that center acknowledged everything before next. The
// cursor file is written without fsync: after a crash a center may get
// some records again (at-least-once), never fewer.
func (j *Journal) SetCursor(center string, next uint64) error {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], next)
	tmp := filepath.Join(j.dir, "cursor."+center+".tmp")
	if err := os.WriteFile(tmp, raw[:], 0o644); err != nil {
		return fmt.Errorf("relay: journal: cursor %s: %w", center, err)
	}
	if err := os.Rename(tmp, filepath.Join(j.dir, "cursor."+center)); err != nil {
		return fmt.Errorf("relay: journal: cursor %s: %w", center, err)
	}
	j.mu.Lock()
	j.cursors[center] = next
	j.mu.Unlock()
	return nil
}

// Collect removes segments that every one of centers has passed.
func (j *Journal) Collect(centers []string) (removed int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	min := j.lastIdx + 1
	for _, c := range centers {
		if cur, ok := j.cursors[c]; !ok {
			return 0
		} else if cur < min {
			min = cur
		}
	}
	for len(j.segments) > 1 && j.segments[1].base <= min {
		if err := os.Remove(j.segments[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			break
		}
		j.segments = j.segments[1:]
		removed++
	}
	return removed
}

// Size returns the bytes held in segment files.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	segs := append([]segment(nil), j.segments...)
	j.mu.Unlock()
	var n int64
	for _, s := range segs {
		if fi, err := os.Stat(s.path); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Close flushes what is queued, stops the writer and closes the segment.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.stopped
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.f != nil {
		err = j.f.Close()
	}
	if j.err != nil {
		return j.err
	}
	return err
}

// JournalReader reads durable records in order, starting at a cursor.
type JournalReader struct {
	j       *Journal
	durable uint64 // a durable index seen (records up to it need no lock)
	gen     uint64 // segGen when positioned
	limit   uint64 // base of the segment after the one open (max when it is the last)
	next    uint64
	base    uint64
	f       *os.File
	r       *bufio.Reader
	hdr     [recHeader]byte
	buf     []byte
	pos     uint64 // index of the record the reader is positioned at
}

// Reader returns a reader positioned at from.
func (j *Journal) Reader(from uint64) *JournalReader {
	return &JournalReader{j: j, next: from}
}

// Close releases the reader's file.
func (r *JournalReader) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// Next returns the next durable record (index, centers, line); the line is
// valid until the following call. It blocks until one is durable or ctx ends.
func (r *JournalReader) Next(ctx context.Context) (uint64, CenterSet, []byte, error) {
	for r.next > r.durable {
		d, ch := r.j.Durable()
		r.durable = d
		if r.next <= d {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, 0, nil, ctx.Err()
		}
	}
	if err := r.position(); err != nil {
		return 0, 0, nil, err
	}
	for {
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("relay: journal: read record %d: %w", r.next, err)
		}
		l := binary.BigEndian.Uint32(r.hdr[0:4])
		if cap(r.buf) < int(l) {
			r.buf = make([]byte, l)
		}
		r.buf = r.buf[:l]
		if _, err := io.ReadFull(r.r, r.buf); err != nil {
			return 0, 0, nil, fmt.Errorf("relay: journal: read record %d: %w", r.next, err)
		}
		idx := binary.BigEndian.Uint64(r.hdr[8:16])
		if crc32.Update(crc32.Checksum(r.hdr[8:], crcTable), crcTable, r.buf) != binary.BigEndian.Uint32(r.hdr[4:8]) {
			return 0, 0, nil, fmt.Errorf("relay: journal: record %d: bad checksum", idx)
		}
		r.pos = idx + 1
		if idx < r.next {
			continue // skipping to the cursor inside a segment
		}
		r.next = idx + 1
		return idx, CenterSet(binary.BigEndian.Uint64(r.hdr[16:24])), r.buf, nil
	}
}

// position opens the segment holding r.next when the reader is not already
// positioned right before it.
func (r *JournalReader) position() error {
	gen := r.j.segGen.Load()
	if r.f != nil && gen == r.gen && r.pos <= r.next && r.next < r.limit {
		return nil // no new segment since, and still inside the open one
	}
	r.j.mu.Lock()
	segs := r.j.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > r.next }) - 1
	if i < 0 {
		i = 0
	}
	s := segs[i]
	r.limit = math.MaxUint64
	if i+1 < len(segs) {
		r.limit = segs[i+1].base
	}
	r.gen = gen
	r.j.mu.Unlock()
	if r.f != nil && r.base == s.base && r.pos <= r.next {
		return nil
	}
	r.Close()
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("relay: journal: open segment: %w", err)
	}
	r.f, r.base, r.pos = f, s.base, s.base
	if r.r == nil {
		r.r = bufio.NewReaderSize(f, 1<<16)
	} else {
		r.r.Reset(f)
	}
	if r.next < s.base {
		r.next = s.base
	}
	return nil
}
