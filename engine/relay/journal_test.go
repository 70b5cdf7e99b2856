package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestJournalAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 4096, []string{"a", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 500; i++ {
		last, err = j.Append(CenterSet(1+i%3), []byte(fmt.Sprintf(`O@1|T="x"|I="%d"`, i)))
		if err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 { // a group commit per 50 records; segments roll between commits
			if err := j.WaitDurable(ctx, last); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(j.segments) < 3 {
		t.Fatalf("expected segment rollover, have %d segments", len(j.segments))
	}
	rd := j.Reader(1)
	for i := 0; i < 500; i++ {
		idx, set, rec, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i+1) || set != CenterSet(1+i%3) || string(rec) != fmt.Sprintf(`O@1|T="x"|I="%d"`, i) {
			t.Fatalf("record %d: %d %d %q", i, idx, set, rec)
		}
	}
	rd.Close()
	// start in the middle of a segment
	rd = j.Reader(250)
	idx, _, _, err := rd.Next(ctx)
	if err != nil || idx != 250 {
		t.Fatalf("seek: %d %v", idx, err)
	}
	rd.Close()
	if err := j.SetCursor("a", 300); err != nil {
		t.Fatal(err)
	}
	j.Close()

	// torn tail: garbage after the last record is cut on reopen
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 9, 1, 2, 3})
	f.Close()
	j, err = OpenJournal(dir, 4096, []string{"a", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Cursor("a") != 300 || j.Cursor("b") != 1 {
		t.Fatalf("cursors %d %d", j.Cursor("a"), j.Cursor("b"))
	}
	next, err := j.Append(1, []byte(`O@1|T="x"|I="after"`))
	if err != nil || next != 501 {
		t.Fatalf("append after reopen: %d %v", next, err)
	}
	if err := j.WaitDurable(ctx, next); err != nil {
		t.Fatal(err)
	}
	rd = j.Reader(500)
	defer rd.Close()
	for _, want := range []string{`O@1|T="x"|I="499"`, `O@1|T="x"|I="after"`} {
		_, _, rec, err := rd.Next(ctx)
		if err != nil || string(rec) != want {
			t.Fatalf("got %q %v want %q", rec, err, want)
		}
	}
	// GC: nothing removed while a center lags, old segments removed once all passed
	before := len(j.segments)
	if n := j.Collect(); n != 0 {
		t.Fatalf("collected %d with b at 1", n)
	}
	j.SetCursor("b", 502)
	j.SetCursor("a", 502)
	if n := j.Collect(); n != before-1 {
		t.Fatalf("collected %d of %d", n, before-1)
	}
	if j.Cursor("new") != j.segments[0].base {
		t.Fatal("a new center should start at the oldest kept record")
	}
}

func BenchmarkJournalAppend(b *testing.B) {
	j, err := OpenJournal(b.TempDir(), 64<<20, []string{"a", "b"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	line := []byte(`O@1700000000010|T="Order"|I="o1"|qty=5000L|px=250.0D|venue='NYSE'`)
	b.ReportAllocs()
	var last uint64
	for b.Loop() {
		last, _ = j.Append(3, line)
	}
	j.WaitDurable(context.Background(), last)
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func bufferLog() (*logrus.Entry, *logBuffer) {
	b := &logBuffer{}
	l := logrus.New()
	l.SetOutput(b)
	return logrus.NewEntry(l), b
}

// readAll returns the records from index from on: index -> centers.
func readAll(t *testing.T, j *Journal, from uint64) map[uint64]CenterSet {
	t.Helper()
	d, _ := j.Durable()
	out := map[uint64]CenterSet{}
	r := j.Reader(from)
	defer r.Close()
	for r.next <= d {
		idx, set, _, err := r.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out[idx] = set
	}
	return out
}

// TestJournalOldFormat (issue 15 item 1): a journal written before centers were named (testdata/journal-v1:
// centers {a, c}, c down) is read and migrated once, logged: its bits are taken as the centers configured
// now, in name order, and written down. Restarted with {a, b, c}, c keeps its records and b gets none of
// them (b is new: it starts after the last record, in a slot of its own).
func TestJournalOldFormat(t *testing.T) {
	dir := copyDir(t, "testdata/journal-v1")
	log, logs := bufferLog()
	j, err := OpenJournal(dir, 4096, []string{"a", "c"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "journal written by an older switchboard names centers by position") ||
		!strings.Contains(logs.String(), `centers="a,c"`) {
		t.Fatalf("migration not logged:\n%s", logs)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "centers")); string(got) != "0 a\n1 c\n" {
		t.Fatalf("centers file %q", got)
	}
	if j.Cursor("a") != 61 || j.Cursor("c") != 1 || j.Slot("c") != 1 {
		t.Fatalf("cursors a=%d c=%d, slot c=%d", j.Cursor("a"), j.Cursor("c"), j.Slot("c"))
	}
	recs := readAll(t, j, 1)
	for i := uint64(1); i <= 60; i++ {
		want := CenterSet(2)
		if i > 50 {
			want = 3
		}
		if recs[i] != want {
			t.Fatalf("record %d: centers %b, want %b", i, recs[i], want)
		}
	}
	// the old tail segment is left as it is; new records go to a new segment with a header
	idx, err := j.Append(1<<1, []byte(`O@1|T="x"|I="new"`)) // relay index 1 = c
	if err != nil || idx != 61 {
		t.Fatalf("append: %d %v", idx, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j.WaitDurable(ctx, idx)
	j.Close()
	head, _ := os.ReadFile(filepath.Join(dir, "00000000000000000061.seg"))
	if !strings.HasPrefix(string(head), segMagic) {
		t.Fatalf("new segment without header: %q", head[:16])
	}
	logs.b.Reset()
	j, err = OpenJournal(dir, 4096, []string{"a", "b", "c"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if strings.Contains(logs.String(), "older switchboard") {
		t.Fatalf("migrated twice:\n%s", logs)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "centers")); string(got) != "0 a\n1 c\n2 b\n" {
		t.Fatalf("centers file %q", got)
	}
	if j.Slot("b") != 2 || j.Cursor("b") != 62 || j.Cursor("c") != 1 {
		t.Fatalf("b: slot %d cursor %d; c cursor %d", j.Slot("b"), j.Cursor("b"), j.Cursor("c"))
	}
	// the relay's indexes are now a=0, b=1, c=2: a record for c still carries c's slot
	idx, _ = j.Append(1<<2, []byte(`O@1|T="x"|I="c again"`))
	j.WaitDurable(ctx, idx)
	if recs := readAll(t, j, 61); recs[61] != 2 || recs[62] != 2 {
		t.Fatalf("records for c: %b %b, want slot 1", recs[61], recs[62])
	}
}

// TestJournalRetention (issue 15 item 7): a center that does not acknowledge loses, for itself only, the
// oldest segments once its records take more than the bytes bound, or are older than the age bound;
// what it loses is counted; the other center is untouched and segments go once both passed them.
func TestJournalRetention(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 4096, []string{"a", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last uint64
	for i := 0; i < 400; i++ {
		set := CenterSet(3) // both
		if i%4 == 3 {
			set = 1 // a only
		}
		last, _ = j.Append(set, []byte(fmt.Sprintf(`O@1|T="x"|I="%d"|pad="0123456789012345678901234567890123456789"`, i)))
		if i%20 == 19 {
			j.WaitDurable(ctx, last)
		}
	}
	j.WaitDurable(ctx, last)
	j.SetCursor("a", last+1) // a has everything; b nothing
	size := j.Size()
	if drops := j.Retain(time.Now(), 0, 0); len(drops) != 0 {
		t.Fatalf("no bound, dropped %+v", drops)
	}
	drops := j.Retain(time.Now(), 3*4096, 0)
	if len(drops) != 1 || drops[0].Center != "b" || drops[0].Reason != "bytes" || drops[0].From != 1 {
		t.Fatalf("drops %+v", drops)
	}
	d := drops[0]
	want := uint64(0)
	for i := d.From; i < d.To; i++ {
		if (i-1)%4 != 3 {
			want++
		}
	}
	if d.Records != want {
		t.Fatalf("counted %d records for b in [%d, %d), want %d", d.Records, d.From, d.To, want)
	}
	if j.Cursor("b") != d.To || j.Floor(j.Slot("b")) != d.To || j.Cursor("a") != last+1 {
		t.Fatalf("cursors a=%d b=%d floor=%d", j.Cursor("a"), j.Cursor("b"), j.Floor(j.Slot("b")))
	}
	j.Collect()
	if got := j.Size(); got > 3*4096+2*4096 || got >= size {
		t.Fatalf("journal %d bytes after retention (was %d)", got, size)
	}
	// a cursor saved late by b's session never goes back below the floor
	j.SetCursor("b", 1)
	if j.Cursor("b") != d.To {
		t.Fatalf("cursor went back to %d", j.Cursor("b"))
	}
	// age: every segment but the one being written is older than a week a week from now
	drops = j.Retain(time.Now().Add(8*24*time.Hour), 0, 7*24*time.Hour)
	if len(drops) != 1 || drops[0].Reason != "age" || drops[0].To != j.segments[len(j.segments)-1].base {
		t.Fatalf("age drops %+v", drops)
	}
}

// TestJournalForgetsCentersNoLongerConfigured: a center removed from relay.centers keeps its records until
// retention drops them, then its slot and cursor go; a center added later takes the slot without getting
// the old records.
func TestJournalForgetsCentersNoLongerConfigured(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 4096, []string{"a", "gone"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last uint64
	for i := 0; i < 200; i++ {
		last, _ = j.Append(3, []byte(fmt.Sprintf(`O@1|T="x"|I="%d"|pad="0123456789012345678901234567890123456789"`, i)))
	}
	j.WaitDurable(ctx, last)
	j.SetCursor("a", last+1)
	j.Close()

	log, logs := bufferLog()
	j, err = OpenJournal(dir, 4096, []string{"a"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "journal holds records for a center that is no longer configured") || !strings.Contains(logs.String(), "center=gone") {
		t.Fatalf("orphan not logged:\n%s", logs)
	}
	if j.Slot("gone") != 1 {
		t.Fatal("the orphan lost its slot before its records")
	}
	// the current segment fills and rolls several times (~22 KB, well past the 8 KiB retained below): the
	// orphan's records are all in segments retention drops. One group commit per ten records, so that a
	// segment rolls near its 4 KiB (a single large batch is written whole to the segment it starts in).
	for i := 0; i < 300; i++ {
		last, _ = j.Append(1, []byte(fmt.Sprintf(`O@1|T="x"|I="later%d"|pad="0123456789012345678901234567890123456789"`, i)))
		if i%10 == 9 {
			j.WaitDurable(ctx, last)
		}
	}
	j.WaitDurable(ctx, last)
	j.SetCursor("a", last+1)
	drops := j.Retain(time.Now(), 2*4096, 0)
	if len(drops) == 0 || drops[0].Center != "gone" || !drops[0].Orphan || drops[0].Records == 0 {
		t.Fatalf("drops %+v", drops)
	}
	if j.Slot("gone") != -1 || !strings.Contains(logs.String(), "nothing left for a center that is no longer configured") {
		t.Fatalf("orphan not forgotten (slot %d):\n%s", j.Slot("gone"), logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "cursor.gone")); !os.IsNotExist(err) {
		t.Fatalf("cursor.gone: %v", err)
	}
	j.Close()
	j, err = OpenJournal(dir, 4096, []string{"a", "new"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Slot("new") != 1 || j.Cursor("new") != last+1 {
		t.Fatalf("new: slot %d cursor %d (last %d)", j.Slot("new"), j.Cursor("new"), last)
	}
}

// FuzzJournalCentersFile: whatever persist_dir/centers holds, opening the journal either fails with an error
// naming the file or gives every configured center a slot of its own.
func FuzzJournalCentersFile(f *testing.F) {
	for _, s := range []string{"0 a\n1 c\n", "0 a\n1 c\n2 b\n", "", "\n\n", "63 z\n", "64 a\n", "-1 a\n", "0 a\n0 b\n", "x y\n",
		"0\n", "1 a b\n", "0 a\r\n1 b\r\n", "2 gone\n0 a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "centers"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(dir, 4096, []string{"a", "b", "c"}, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "relay: journal") {
				t.Fatalf("error %q", err)
			}
			return
		}
		defer j.Close()
		seen := map[int]string{}
		for _, c := range []string{"a", "b", "c"} {
			s := j.Slot(c)
			if s < 0 || s >= MaxCenters {
				t.Fatalf("%s: slot %d", c, s)
			}
			if other, dup := seen[s]; dup {
				t.Fatalf("%s and %s share slot %d (file %q)", c, other, s, content)
			}
			seen[s] = c
		}
	})
}

// TestJournalShutdownDoesNotWaitForAStuckDisk: a disk that stops answering during the last fsync (here the
// writer blocks in OnSync, just after it) does not hold the shutdown past its deadline; the record written
// then was never reported durable, so nothing acknowledged is at stake. Once the disk answers, the writer
// ends, and Close is a no-op.
func TestJournalShutdownDoesNotWaitForAStuckDisk(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 1<<20, []string{"a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	j.OnSync = func(time.Duration, int) {
		once.Do(func() { close(stuck) })
		<-release
	}
	idx, err := j.Append(1, []byte(`O@1|T="x"|I="1"`))
	if err != nil {
		t.Fatal(err)
	}
	<-stuck
	if d, _ := j.Durable(); d >= idx {
		t.Fatalf("durable %d before the fsync returned", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = j.Shutdown(ctx)
	if !errors.Is(err, ErrJournalStuck) || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Shutdown with the disk stuck: %v", err)
	}
	if _, err := j.Append(1, []byte(`O@1|T="x"|I="2"`)); err == nil {
		t.Fatal("an append after Shutdown was taken")
	}
	close(release)
	select {
	case <-j.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not end once the disk answered")
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
}
