package relay

import (
	"context"
	"time"
)

// journalStore is where guaranteed mode keeps routed messages until their centers acknowledge them:
// the local segment files (Journal, relay.journal = local) or a replicated JetStream stream (jsJournal,
// relay.journal = jetstream). Applications are acknowledged once waitDurable returns for their record;
// each center reads the store from its cursor.
//
// Tickets (Append, waitDurable) order a relay's appends; record indexes (Cursor, readers) name records in
// the store. The local journal uses one number for both; the JetStream journal's tickets are its own and
// its indexes are stream sequence numbers.
type journalStore interface {
	// Append queues one record for centers (the relay's center indexes), sent by the application login,
	// and returns its ticket.
	Append(centers CenterSet, login string, line []byte) (uint64, error)
	// waitDurable blocks until the record of ticket is durable (or the store fails, or ctx ends) and
	// returns a ticket known durable, at least ticket.
	waitDurable(ctx context.Context, ticket uint64) (uint64, error)
	// Cursor is the index of the next record center has not acknowledged.
	Cursor(center string) uint64
	// SetCursor records that center acknowledged everything before next.
	SetCursor(center string, next uint64) error
	// Backlog is how many records lie past center's cursor (records for other centers count too).
	Backlog(center string) int64
	// Slot is a center's bit in the CenterSet of records (-1: unknown).
	Slot(center string) int
	// openReader reads the records from index from, in order, for center c.
	openReader(c *Center, from uint64) (recordReader, error)
	// Size is the bytes the store holds.
	Size() int64
	// keep applies retention and removes what every center has acknowledged; it runs every period until
	// ctx ends.
	keep(ctx context.Context, r *Relay, period time.Duration)
	// Shutdown closes the store; what it still writes may take until ctx ends.
	Shutdown(ctx context.Context) error
}

// recordReader reads a store's records in order for one center's link.
type recordReader interface {
	// next returns the next record if one is ready, without blocking (ok false: none yet; wait on
	// ready). A record whose set does not name the center is returned too (the link skips it), and so is
	// a record with an empty set and no line, which moves the link past records it will not get (dropped
	// by retention).
	next(ctx context.Context) (idx uint64, set CenterSet, line []byte, ok bool, err error)
	// ready is signalled (or closed) when next may have a record.
	ready() <-chan struct{}
	Close()
}

// localJournal is the Journal as a journalStore.
type localJournal struct{ *Journal }

func (l localJournal) Append(centers CenterSet, _ string, line []byte) (uint64, error) {
	return l.Journal.Append(centers, line)
}

func (l localJournal) Backlog(center string) int64 {
	durable, _ := l.Durable()
	if cur := l.Cursor(center); cur <= durable {
		return int64(durable - cur + 1)
	}
	return 0
}

func (l localJournal) openReader(c *Center, from uint64) (recordReader, error) {
	return &localReader{r: l.Reader(from), slot: c.slot}, nil
}

func (l localJournal) keep(ctx context.Context, r *Relay, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.Rolled(): // the journal grew by a segment: the bytes bound may be passed
		}
		r.retainJournal(l.Journal, time.Now())
	}
}

// localReader reads the segments, skipping what retention took from the center.
type localReader struct {
	r       *JournalReader
	slot    int
	durable uint64
	moved   <-chan struct{}
}

func (lr *localReader) next(ctx context.Context) (uint64, CenterSet, []byte, bool, error) {
	if lr.r.next > lr.durable {
		lr.durable, lr.moved = lr.r.j.Durable()
		if lr.r.next > lr.durable {
			return 0, 0, nil, false, nil
		}
	}
	if f := lr.r.j.Floor(lr.slot); lr.r.next < f {
		// retention moved the center past these records (counted there)
		lr.r.next = f
		return f - 1, 0, nil, true, nil
	}
	idx, set, rec, err := lr.r.Next(ctx)
	if err != nil {
		return 0, 0, nil, false, err
	}
	return idx, set, rec, true, nil
}

func (lr *localReader) ready() <-chan struct{} {
	if lr.moved == nil {
		_, lr.moved = lr.r.j.Durable()
	}
	return lr.moved
}

func (lr *localReader) Close() { lr.r.Close() }
