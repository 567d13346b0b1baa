package restart

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress reports what a restart waits for: on a terminal one live line per component
// (rewritten in place with the elapsed time), otherwise plain timestamped lines.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	now      func() time.Time
	live     bool // a live line is open
}

// NewProgress writes to w; terminal selects the live-line form.
func NewProgress(w io.Writer, terminal bool) *Progress {
	return &Progress{w: w, terminal: terminal, now: time.Now}
}

// Line reports a step.
func (p *Progress) Line(comp, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLive()
	fmt.Fprintf(p.w, "%s %-18s %s\n", p.now().UTC().Format(time.RFC3339), comp, fmt.Sprintf(format, a...))
}

// Done reports a component finished.
func (p *Progress) Done(comp, format string, a ...any) { p.Line(comp, "done: "+format, a...) }

// Tick updates the live line while waiting; plain output gets nothing (the Line before it
// said what is awaited).
func (p *Progress) Tick(comp, what string, elapsed time.Duration) {
	if !p.terminal {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r\033[K%-18s %s (%s)", comp, what, elapsed.Round(100*time.Millisecond))
	p.live = true
}

func (p *Progress) closeLive() {
	if p.live {
		fmt.Fprint(p.w, "\r\033[K")
		p.live = false
	}
}
