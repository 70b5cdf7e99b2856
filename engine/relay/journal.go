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
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Journal is the guaranteed-mode store-and-forward log: append-only segment
// files of records, each [len u32][crc32c u32][index u64][centers u64][line].
// Appends are made durable by one writer goroutine that writes everything
// queued and fsyncs once (group commit). Each center has a cursor file
// holding the index of the next record it has not yet acknowledged.
//
// A record names its centers by slot, a bit the journal gives each center
// by name and keeps in the file "centers" (`<slot> <name>` lines), so the
// records of a journal go to the same centers whatever relay.centers says
// at the next start. A center that is no longer configured keeps its slot
// and its records until retention (Retain) drops them; then it is forgotten.
// Segment files begin with a header, "SBJRNL2\n" and their creation time;
// segments written before (no header, records by position in the sorted
// relay.centers) are read as they are, their bits taken as the centers
// configured at the first start that finds them (written down in "centers"
// then, and logged).
type Journal struct {
	dir     string
	segSize int64
	log     *logrus.Entry

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
	slots    map[string]int    // center name -> slot (its bit in records)
	orphans  map[string]uint64 // centers no longer configured -> the last index that may name them
	closed   bool

	identity bool              // the relay's center indexes are the slots (no translation on Append)
	toSlot   [MaxCenters]uint8 // the relay's center index -> slot
	floors   [MaxCenters]atomic.Uint64

	f       *os.File // current segment
	size    int64
	stopped chan struct{}
	segGen  atomic.Uint64 // bumped when a segment starts (readers re-check their position)
	rolled  chan struct{} // signalled when a segment starts (retention looks again)

	// OnSync, when set before the first Append, is told how long each group
	// commit's fsync took and how many bytes it made durable.
	OnSync func(d time.Duration, bytes int)
}

// segMagic begins every segment written since centers are named by slot; the creation time (unix ms,
// u64) follows it.
const segMagic = "SBJRNL2\n"

// segHeader is the size of a segment's header (segments without one start with a record).
const segHeader = len(segMagic) + 8

type segment struct {
	base    uint64 // first index in the segment
	path    string
	hdr     int64     // bytes before the first record: segHeader, or 0 for an old segment
	created time.Time // from the header (an old segment: its file's modification time)
	size    int64     // bytes in the file
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const recHeader = 4 + 4 + 8 + 8

// ErrJournalClosed is returned by appends after Close.
var ErrJournalClosed = errors.New("relay: journal closed")

// OpenJournal opens (or creates) the journal in dir for the relay's centers (relay.centers names, in the
// relay's index order), truncating a torn tail left by a crash, and starts its writer. log (may be nil)
// hears about migrations and centers no longer configured.
func OpenJournal(dir string, segSize int64, centers []string, log *logrus.Entry) (*Journal, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	if len(centers) > MaxCenters {
		return nil, fmt.Errorf("relay: journal: %d centers, at most %d", len(centers), MaxCenters)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("relay: journal %s: %w", dir, err)
	}
	j := &Journal{dir: dir, segSize: segSize, log: log, durCh: make(chan struct{}), wake: make(chan struct{}, 1),
		cursors: map[string]uint64{}, slots: map[string]int{}, orphans: map[string]uint64{}, stopped: make(chan struct{}),
		rolled: make(chan struct{}, 1)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("relay: journal %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".seg"); ok {
			b, err := strconv.ParseUint(base, 10, 64)
			if err == nil {
				seg, err := statSegment(filepath.Join(dir, name), b)
				if err != nil {
					return nil, err
				}
				j.segments = append(j.segments, seg)
			}
		}
		if c, ok := strings.CutPrefix(name, "cursor."); ok && !strings.HasSuffix(c, ".tmp") {
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
	} else if err := j.openTail(); err != nil {
		return nil, err
	}
	j.durable = j.lastIdx
	if err := j.loadSlots(centers); err != nil {
		j.f.Close()
		return nil, err
	}
	go j.run()
	return j, nil
}

// statSegment reads what a segment's file says of it: header or not, creation time, size.
func statSegment(path string, base uint64) (segment, error) {
	s := segment{base: base, path: path}
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("relay: journal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return s, fmt.Errorf("relay: journal: %w", err)
	}
	s.size, s.created = fi.Size(), fi.ModTime()
	var h [segHeader]byte
	if n, _ := io.ReadFull(f, h[:]); n == segHeader && string(h[:len(segMagic)]) == segMagic {
		s.hdr = int64(segHeader)
		s.created = time.UnixMilli(int64(binary.BigEndian.Uint64(h[len(segMagic):])))
	}
	return s, nil
}

// openTail positions the writer after the last valid record. A torn tail is cut; a last segment without
// a header (written by an older switchboard) is left as it is and a new segment follows it.
func (j *Journal) openTail() error {
	last := &j.segments[len(j.segments)-1]
	n, good, err := scanSegment(last.path, last.base, last.hdr)
	if err != nil {
		return err
	}
	j.lastIdx = last.base + n - 1
	if last.hdr == 0 {
		if n == 0 { // an empty old segment: its place goes to the new one
			if err := os.Remove(last.path); err != nil {
				return fmt.Errorf("relay: journal: %w", err)
			}
			j.segments = j.segments[:len(j.segments)-1]
		}
		return j.newSegment(j.lastIdx + 1)
	}
	f, err := os.OpenFile(last.path, os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("relay: journal: %w", err)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return fmt.Errorf("relay: journal: truncate torn tail: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("relay: journal: %w", err)
	}
	j.f, j.size, last.size = f, good, good
	return nil
}

// loadSlots reads the centers file (slot per center name) and gives a slot to every configured center
// that has none. A journal with segments and no centers file was written by an older switchboard: its
// bits are the positions of the centers configured now, in name order (as it wrote them), written down
// once and logged. A new center starts after the last record (none names it).
func (j *Journal) loadSlots(centers []string) error {
	path := filepath.Join(j.dir, "centers")
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		sorted := append([]string(nil), centers...)
		sort.Strings(sorted)
		if j.lastIdx >= j.segments[0].base || len(j.segments) > 1 || j.segments[0].hdr == 0 {
			var cursorNames []string
			for c := range j.cursors {
				cursorNames = append(cursorNames, c)
			}
			sort.Strings(cursorNames)
			j.log.WithFields(logrus.Fields{"persist_dir": j.dir, "centers": strings.Join(sorted, ","),
				"cursors": strings.Join(cursorNames, ",")}).Warn("journal written by an older switchboard names centers by position: " +
				"its records are read as the centers configured now, in name order (bit 0 = the first); written down in persist_dir/centers " +
				"from now on. If relay.centers changed since those records were written, they reach the wrong centers: restore the old " +
				"relay.centers until every center has caught up")
		}
		for i, c := range sorted {
			j.slots[c] = i
			if _, ok := j.cursors[c]; !ok {
				j.cursors[c] = j.segments[0].base
			}
		}
	case err != nil:
		return fmt.Errorf("relay: journal: %w", err)
	default:
		for n, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			slot, name, ok := strings.Cut(strings.TrimSpace(line), " ")
			i, err := strconv.Atoi(slot)
			if line == "" {
				continue
			}
			if !ok || err != nil || i < 0 || i >= MaxCenters || !validCenterName(name) {
				return fmt.Errorf("relay: journal: %s:%d: expected \"<slot> <name>\", got %q", path, n+1, line)
			}
			for other, s := range j.slots {
				if s == i || other == name {
					return fmt.Errorf("relay: journal: %s:%d: %q: slot or name given twice", path, n+1, line)
				}
			}
			j.slots[name] = i
			if _, ok := j.cursors[name]; !ok {
				j.cursors[name] = j.segments[0].base
			}
		}
	}
	configured := map[string]bool{}
	for _, c := range centers {
		configured[c] = true
	}
	// centers no longer configured keep their records until retention drops them
	for name := range j.slots {
		if configured[name] {
			continue
		}
		if j.cursors[name] > j.lastIdx {
			j.forget(name)
			continue
		}
		j.orphans[name] = j.lastIdx
		j.log.WithFields(logrus.Fields{"center": name, "from": j.cursors[name], "to": j.lastIdx}).
			Warn("journal holds records for a center that is no longer configured: kept until retention (relay.journal_retention_bytes, relay.journal_retention_age) drops them")
	}
	added, aerr := assignSlots(j.slots, centers, path, func(c string) error { return j.writeCursor(c, j.lastIdx+1) })
	if aerr != nil {
		return aerr
	}
	if added || errors.Is(err, os.ErrNotExist) {
		if err := j.writeSlots(); err != nil {
			return err
		}
	}
	j.identity = true
	for i, c := range centers {
		j.toSlot[i] = uint8(j.slots[c])
		if j.slots[c] != i {
			j.identity = false
		}
	}
	return nil
}

// assignSlots gives each center of centers without a slot the lowest free one, in order, after calling
// startAt for it (its cursor must be written first: the slot may have been another center's, whose older
// records must not reach this one). where names the store in the error when every slot is taken.
func assignSlots(slots map[string]int, centers []string, where string, startAt func(center string) error) (added bool, err error) {
	used := [MaxCenters]bool{}
	for _, s := range slots {
		used[s] = true
	}
	for _, c := range centers {
		if _, ok := slots[c]; ok {
			continue
		}
		free := -1
		for i := range used {
			if !used[i] {
				free = i
				break
			}
		}
		if free < 0 {
			return added, fmt.Errorf("relay: journal: no slot for center %s: %d centers are named in %s (centers no longer configured keep theirs until retention drops their records)", c, MaxCenters, where)
		}
		used[free] = true
		if err := startAt(c); err != nil {
			return added, err
		}
		slots[c] = free
		added = true
	}
	return added, nil
}

// forget drops a center no longer configured with nothing left for it: its slot and its cursor.
func (j *Journal) forget(name string) {
	delete(j.slots, name)
	delete(j.orphans, name)
	delete(j.cursors, name)
	_ = os.Remove(filepath.Join(j.dir, "cursor."+name))
	j.log.WithField("center", name).Info("journal: nothing left for a center that is no longer configured: forgotten")
}

// writeSlots writes the centers file: written to a temporary file, synced, renamed.
func (j *Journal) writeSlots() error {
	names := make([]string, 0, len(j.slots))
	for n := range j.slots {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return j.slots[names[a]] < j.slots[names[b]] })
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%d %s\n", j.slots[n], n)
	}
	return writeFileSync(filepath.Join(j.dir, "centers"), []byte(b.String()), j.dir)
}

// writeFileSync replaces path with data durably (temporary file, fsync, rename, fsync of dir).
func writeFileSync(path string, data []byte, dir string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("relay: journal: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("relay: journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("relay: journal: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("relay: journal: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("relay: journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// writeCursor records a center's cursor durably (a new center's first one).
func (j *Journal) writeCursor(center string, next uint64) error {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], next)
	if err := writeFileSync(filepath.Join(j.dir, "cursor."+center), raw[:], j.dir); err != nil {
		return err
	}
	j.cursors[center] = next
	return nil
}

// Slot returns a center's slot: its bit in the CenterSet of records (-1 for a center the journal does
// not know).
func (j *Journal) Slot(center string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.slots[center]; ok {
		return s
	}
	return -1
}

// Floor is the lowest index a center's reader may still send: retention moved the center past what is
// below it.
func (j *Journal) Floor(slot int) uint64 { return j.floors[slot].Load() }

// scanSegment counts the valid records of a segment and returns the offset
// after the last valid one.
func scanSegment(path string, base uint64, start int64) (n uint64, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("relay: journal: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("relay: journal: %w", err)
	}
	good = start
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
	now := time.Now()
	var h [segHeader]byte
	copy(h[:], segMagic)
	binary.BigEndian.PutUint64(h[len(segMagic):], uint64(now.UnixMilli()))
	if _, err := f.Write(h[:]); err != nil {
		f.Close()
		return fmt.Errorf("relay: journal: new segment: %w", err)
	}
	if d, err := os.Open(j.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size = f, int64(segHeader)
	j.segments = append(j.segments, segment{base: base, path: path, hdr: int64(segHeader), created: now, size: int64(segHeader)})
	j.segGen.Add(1)
	select {
	case j.rolled <- struct{}{}:
	default:
	}
	return nil
}

// Rolled is signalled when a new segment starts: the journal grew by a segment, retention may apply.
func (j *Journal) Rolled() <-chan struct{} { return j.rolled }

// Append queues one record for centers (by the relay's center index, as
// OpenJournal was given them) and returns its index; the record is durable
// once Durable() >= index (see WaitDurable).
func (j *Journal) Append(centers CenterSet, line []byte) (uint64, error) {
	if !j.identity {
		centers = j.slotsOf(centers)
	}
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

// slotsOf translates a set of the relay's center indexes into slots.
func (j *Journal) slotsOf(set CenterSet) CenterSet { return mapSlots(set, &j.toSlot) }

// mapSlots translates a set of the relay's center indexes into journal slots through toSlot (both
// journals keep one: index -> slot).
func mapSlots(set CenterSet, toSlot *[MaxCenters]uint8) CenterSet {
	var out CenterSet
	for set != 0 {
		i := bits.TrailingZeros64(uint64(set))
		set &^= 1 << uint(i)
		out |= 1 << uint(toSlot[i])
	}
	return out
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
	j.mu.Lock()
	j.segments[len(j.segments)-1].size = j.size
	j.mu.Unlock()
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

// SetCursor records that center acknowledged everything before next (never
// below the floor retention set). The cursor file is written without fsync:
// after a crash a center may get some records again (at-least-once), never
// fewer.
func (j *Journal) SetCursor(center string, next uint64) error {
	j.mu.Lock()
	if s, ok := j.slots[center]; ok {
		next = max(next, j.floors[s].Load())
	}
	j.mu.Unlock()
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

// Collect removes segments that every center the journal knows (configured,
// or no longer configured and still holding records) has passed.
func (j *Journal) Collect() (removed int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	min := j.lastIdx + 1
	for c := range j.slots {
		if cur := j.cursors[c]; cur < min {
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

// Drop is what retention took from one center: the records addressed to it
// between From and To (excluded) that it had not acknowledged.
type Drop struct {
	Center   string
	Reason   string // "bytes" or "age"
	From, To uint64
	Records  uint64
	Orphan   bool // the center is no longer configured
}

// Retain applies retention to every center the journal knows: a center
// whose unacknowledged records take more than maxBytes of segments, or
// begin in a segment whose records are all older than maxAge, is moved to
// the next segment, and so on (a segment at a time; the segment being
// written is kept). 0 turns a bound off. A center no longer configured is
// forgotten once nothing is left for it. It returns what was dropped.
func (j *Journal) Retain(now time.Time, maxBytes int64, maxAge time.Duration) []Drop {
	var drops []Drop
	j.mu.Lock()
	segs := append([]segment(nil), j.segments...)
	type state struct {
		name   string
		slot   int
		cursor uint64
	}
	var centers []state
	for name, slot := range j.slots {
		centers = append(centers, state{name, slot, j.cursors[name]})
	}
	j.mu.Unlock()
	sort.Slice(centers, func(a, b int) bool { return centers[a].name < centers[b].name })
	for _, c := range centers {
		k := sort.Search(len(segs), func(i int) bool { return segs[i].base > c.cursor }) - 1
		if k < 0 {
			k = 0
		}
		var held int64
		for _, s := range segs[k:] {
			held += s.size
		}
		to, reason := c.cursor, ""
		for ; k < len(segs)-1; k++ {
			switch {
			case maxBytes > 0 && held > maxBytes:
				reason = "bytes"
			case maxAge > 0 && now.Sub(segs[k+1].created) > maxAge:
				// every record of segment k is older than the next segment's first
				reason = "age"
			default:
				k = len(segs) // done
				continue
			}
			held -= segs[k].size
			to = segs[k+1].base
		}
		if to <= c.cursor {
			continue
		}
		n, err := j.countFor(c.slot, c.cursor, to)
		if err != nil {
			j.log.WithError(err).WithField("center", c.name).Warn("journal retention: records not counted")
		}
		j.mu.Lock()
		j.floors[c.slot].Store(max(j.floors[c.slot].Load(), to))
		next := max(j.cursors[c.name], to) // the center's session may have moved on meanwhile
		_, orphan := j.orphans[c.name]
		j.mu.Unlock()
		if err := j.SetCursor(c.name, next); err != nil {
			j.log.WithError(err).WithField("center", c.name).Warn("journal retention: cursor not saved")
		}
		drops = append(drops, Drop{Center: c.name, Reason: reason, From: c.cursor, To: to, Records: n, Orphan: orphan})
	}
	j.mu.Lock()
	forgot := false
	for name, last := range j.orphans {
		if j.cursors[name] > last {
			j.forget(name)
			forgot = true
		}
	}
	if forgot {
		if err := j.writeSlots(); err != nil {
			j.log.WithError(err).Warn("journal: centers file not written")
		}
	}
	j.mu.Unlock()
	return drops
}

// countFor counts the records addressed to slot in [from, to) (all durable).
func (j *Journal) countFor(slot int, from, to uint64) (uint64, error) {
	r := j.Reader(from)
	defer r.Close()
	var n uint64
	for r.next < to {
		idx, set, _, err := r.Next(context.Background())
		if err != nil {
			return n, err
		}
		if idx >= to {
			break
		}
		if set.Has(slot) {
			n++
		}
	}
	return n, nil
}

// Size returns the bytes held in segment files.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	var n int64
	for _, s := range j.segments {
		n += s.size
	}
	return n
}

// Close flushes what is queued, stops the writer and closes the segment.
func (j *Journal) Close() error { return j.Shutdown(context.Background()) }

// ErrJournalStuck is what Shutdown returns when the journal's last write and fsync did not finish in time.
var ErrJournalStuck = errors.New("relay: journal: the last write and fsync did not finish before the shutdown deadline (the disk does not answer); records not yet durable were never acknowledged, so their applications send them again")

// Shutdown is Close bounded by ctx: when ctx ends before the writer has written and fsynced what is
// pending (a disk that does not answer), it returns ErrJournalStuck at once instead of holding the
// process's exit; the writer is left to finish or to end with the process, and the segment stays open.
// Nothing acknowledged is lost: a status is sent only once its record is durable.
func (j *Journal) Shutdown(ctx context.Context) error {
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
	select {
	case <-j.stopped:
	case <-ctx.Done():
		return fmt.Errorf("%w (%v)", ErrJournalStuck, context.Cause(ctx))
	}
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
	if s.hdr > 0 {
		if _, err := f.Seek(s.hdr, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("relay: journal: open segment: %w", err)
		}
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
