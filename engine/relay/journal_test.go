package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestJournalAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 4096)
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
	j, err = OpenJournal(dir, 4096)
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
	if n := j.Collect([]string{"a", "b"}); n != 0 {
		t.Fatalf("collected %d with b at 1", n)
	}
	j.SetCursor("b", 502)
	j.SetCursor("a", 502)
	if n := j.Collect([]string{"a", "b"}); n != before-1 {
		t.Fatalf("collected %d of %d", n, before-1)
	}
	if j.Cursor("new") != j.segments[0].base {
		t.Fatal("a new center should start at the oldest kept record")
	}
}

func BenchmarkJournalAppend(b *testing.B) {
	j, err := OpenJournal(b.TempDir(), 64<<20)
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
