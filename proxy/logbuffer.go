package proxy

import (
	"io"
	"sync"
	"time"
)

// LogBufferOptions tune a LogBuffer.
type LogBufferOptions struct {
	// Size is how many bytes are gathered before they are written out.
	// Default 64 KiB.
	Size int
	// FlushEvery is the longest a line waits before it is written out.
	// Default 1s.
	FlushEvery time.Duration

	// tick replaces the FlushEvery ticker in tests.
	tick <-chan time.Time
}

// LogBuffer is an io.Writer for a logger's output (the access log writes
// one line per request): it gathers lines in memory and writes them out
// when Size bytes have gathered, every FlushEvery, and on Flush or Close.
//
// A slog handler writes each line while holding its own lock, so with a
// plain file or pipe every request waits in turn for one write system call
// (the access line is at info). Through a LogBuffer that lock covers a
// copy into memory; the write itself happens outside it, in order, while
// other lines keep gathering in a second buffer.
//
// Lines are lost only if the process dies without Close: the command MUST
// Close it (after the server has drained) before exiting. Writes after
// Close go straight to the underlying writer. It is safe for concurrent
// use.
type LogBuffer struct {
	w    io.Writer
	size int

	mu     sync.Mutex // guards buf, err, closed
	buf    []byte
	err    error // the last write error, reported by the next Write
	closed bool

	// flushMu orders write-outs: it is taken while mu is held, so buffers
	// are written in the order they filled. It guards spare.
	flushMu sync.Mutex
	spare   []byte

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// NewLogBuffer returns a LogBuffer writing to w and starts its periodic
// flush; Close stops it.
func NewLogBuffer(w io.Writer, opts LogBufferOptions) *LogBuffer {
	if opts.Size <= 0 {
		opts.Size = 64 << 10
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = time.Second
	}
	lb := &LogBuffer{
		w:       w,
		size:    opts.Size,
		buf:     make([]byte, 0, opts.Size),
		spare:   make([]byte, 0, opts.Size),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	tick := opts.tick
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(opts.FlushEvery)
		tick = ticker.C
	}
	go func() {
		defer close(lb.stopped)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-lb.stop:
				return
			case <-tick:
				if err := lb.Flush(); err != nil {
					// Nobody is waiting for this flush: Close reports
					// it. Later lines are still gathered — dropping the
					// next one (an audit event, say) would be worse.
					lb.mu.Lock()
					if lb.err == nil {
						lb.err = err
					}
					lb.mu.Unlock()
				}
			}
		}
	}()
	return lb
}

// Write gathers p (one log line). It writes out what has gathered first
// when p would not fit, and writes a p larger than Size directly. An error
// of a periodic flush is kept for Close, never charged to this line.
func (lb *LogBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	if lb.closed {
		lb.mu.Unlock()
		// In order after Close's final flush, never interleaved with it.
		lb.flushMu.Lock()
		defer lb.flushMu.Unlock()
		return lb.w.Write(p)
	}
	if len(lb.buf)+len(p) <= lb.size {
		lb.buf = append(lb.buf, p...)
		lb.mu.Unlock()
		return len(p), nil
	}
	// Full: write out what has gathered (unlocks mu), then p.
	if err := lb.flushLocked(); err != nil {
		return 0, err
	}
	if len(p) > lb.size {
		lb.flushMu.Lock()
		defer lb.flushMu.Unlock()
		return lb.w.Write(p)
	}
	return lb.Write(p)
}

// Flush writes out every gathered line.
func (lb *LogBuffer) Flush() error {
	lb.mu.Lock()
	return lb.flushLocked()
}

// flushLocked is called with mu held and releases it: it swaps in the
// spare buffer, then writes the full one with only flushMu held.
func (lb *LogBuffer) flushLocked() error {
	if len(lb.buf) == 0 {
		lb.mu.Unlock()
		return nil
	}
	lb.flushMu.Lock()
	full := lb.buf
	lb.buf = lb.spare
	lb.mu.Unlock()
	_, err := lb.w.Write(full)
	lb.spare = full[:0]
	lb.flushMu.Unlock()
	return err
}

// Close stops the periodic flush and writes out everything gathered; later
// Writes go straight to the underlying writer. It does not close that
// writer. Calling it again is a no-op that returns nil.
func (lb *LogBuffer) Close() error {
	var err error
	lb.once.Do(func() {
		close(lb.stop)
		<-lb.stopped
		lb.mu.Lock()
		lb.closed = true
		err = lb.flushLocked()
		if err == nil {
			lb.mu.Lock()
			err, lb.err = lb.err, nil
			lb.mu.Unlock()
		}
	})
	return err
}

var _ io.WriteCloser = (*LogBuffer)(nil)
