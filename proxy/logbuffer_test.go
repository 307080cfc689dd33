package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink is a concurrency-safe writer that records every Write call.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	err    error
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newTestLogBuffer(t *testing.T, size int) (*LogBuffer, *sink, chan time.Time) {
	t.Helper()
	s := &sink{}
	tick := make(chan time.Time)
	lb := NewLogBuffer(s, LogBufferOptions{Size: size, tick: tick})
	t.Cleanup(func() { lb.Close() })
	return lb, s, tick
}

func TestLogBufferGathersThenWritesInOrder(t *testing.T) {
	lb, s, _ := newTestLogBuffer(t, 100)
	for i := range 3 {
		fmt.Fprintf(lb, "line %d\n", i)
	}
	if got := s.String(); got != "" {
		t.Fatalf("underlying writer before any flush = %q, want nothing yet", got)
	}
	if err := lb.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "line 0\nline 1\nline 2\n"; got != want {
		t.Fatalf("after Flush = %q, want %q", got, want)
	}

	// Filling the buffer writes out what gathered before the new line.
	long := strings.Repeat("x", 60) + "\n"
	lb.Write([]byte(long))
	lb.Write([]byte(long))
	if got, want := s.String(), "line 0\nline 1\nline 2\n"+long; got != want {
		t.Errorf("after overflowing = %q, want the first long line written out", got)
	}
	// A line larger than the buffer goes straight through, after the rest.
	huge := strings.Repeat("h", 150) + "\n"
	lb.Write([]byte(huge))
	if got, want := s.String(), "line 0\nline 1\nline 2\n"+long+long+huge; got != want {
		t.Errorf("after a huge line = %q, want %q", got, want)
	}
}

func TestLogBufferPeriodicFlush(t *testing.T) {
	lb, s, tick := newTestLogBuffer(t, 1000)
	lb.Write([]byte("waiting\n"))
	tick <- time.Time{}
	tick <- time.Time{} // returns once the first tick's flush is done
	if got := s.String(); got != "waiting\n" {
		t.Errorf("after a tick = %q, want the gathered line written", got)
	}
	s.mu.Lock()
	n := s.writes
	s.mu.Unlock()
	tick <- time.Time{}
	tick <- time.Time{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writes != n {
		t.Errorf("ticks with nothing gathered made %d writes, want none", s.writes-n)
	}
}

func TestLogBufferCloseLosesNothing(t *testing.T) {
	lb, s, _ := newTestLogBuffer(t, 1000)
	lb.Write([]byte("before close\n"))
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "before close\n" {
		t.Errorf("after Close = %q, want the gathered line written", got)
	}
	lb.Write([]byte("after close\n"))
	if got := s.String(); got != "before close\nafter close\n" {
		t.Errorf("a Write after Close = %q, want it written at once", got)
	}
	if err := lb.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestLogBufferConcurrentWriters(t *testing.T) {
	lb, s, _ := newTestLogBuffer(t, 256)
	const writers, lines = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(lb, "w%d %04d\n", w, i)
			}
		})
	}
	wg.Wait()
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for _, l := range strings.Split(strings.TrimSuffix(s.String(), "\n"), "\n") {
		var w, i int
		if _, err := fmt.Sscanf(l, "w%d %d", &w, &i); err != nil {
			t.Fatalf("torn or mixed line %q", l)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d after line %d, want them in order", w, i, next[w]-1)
		}
		next[w]++
	}
	for w, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines written out, want %d", w, n, lines)
		}
	}
}

func TestLogBufferWriteErrors(t *testing.T) {
	lb, s, tick := newTestLogBuffer(t, 1000)
	boom := errors.New("disk full")
	s.mu.Lock()
	s.err = boom
	s.mu.Unlock()
	lb.Write([]byte("a\n"))
	if err := lb.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush() = %v, want the writer's error", err)
	}
	lb.Write([]byte("b\n"))
	tick <- time.Time{}
	tick <- time.Time{}
	// A failed periodic flush must not cost the next, unrelated line (it
	// may be an audit event): it is gathered, and Close reports the error.
	if n, err := lb.Write([]byte("c\n")); err != nil || n != 2 {
		t.Errorf("Write() after a failed periodic flush = %d, %v, want 2, nil", n, err)
	}
	s.mu.Lock()
	s.err = nil
	s.mu.Unlock()
	if err := lb.Close(); !errors.Is(err, boom) {
		t.Errorf("Close() = %v, want the periodic flush's error", err)
	}
	if got := s.String(); !strings.Contains(got, "c\n") {
		t.Errorf("line written after the failed flush was lost: output %q", got)
	}
}
