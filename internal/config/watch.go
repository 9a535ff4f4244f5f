package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the watcher waits after a file event before reloading: an
// editor's save is several events (truncate, write, chmod, or write-temp-and-rename).
const DefaultDebounce = 100 * time.Millisecond

// DefaultResync is how often the watcher re-reads the file regardless of file events:
// a change reaches every replica within about a second even when an event is lost.
const DefaultResync = time.Second

// WatchConfig configures a Watcher.
type WatchConfig struct {
	// Path is the spec file.
	Path string
	// Logger receives reloads and rejected files; nil discards.
	Logger *slog.Logger
	// Signals delivers reload requests. Nil installs a SIGHUP handler for the watcher's
	// lifetime; tests and embedders pass their own channel.
	Signals <-chan os.Signal
	// Debounce coalesces file events; zero means DefaultDebounce.
	Debounce time.Duration
	// Resync re-reads the file this often whatever the file events say (one read and a
	// hash when unchanged), so an event that never arrives (network file systems, some
	// volume mounts) delays a change by at most this long; zero means DefaultResync,
	// negative disables it.
	Resync time.Duration
	// OnReload, when set, is called after every reload attempt, from the reloading
	// goroutine, with the spec in force afterwards, whether it changed, and why a new
	// file was rejected (nil when it was not).
	OnReload func(spec *Spec, changed bool, err error)
}

// Watcher holds the current perimeter spec and replaces it when the file changes or a
// reload is signalled. The swap is atomic: readers get the old spec or the new one, never
// a mix, and a file that does not validate is rejected while the running spec stays.
type Watcher struct {
	cfg     WatchConfig
	log     *slog.Logger
	current atomic.Pointer[Spec]

	mu        sync.Mutex // serialises reloads and guards subs and rejected
	subs      map[chan *Spec]struct{}
	rejected  [32]byte // digest of the last rejected file, so it is reported once
	refused   string   // why the file could not be read or was refused, so it is said once
	fsw       *fsnotify.Watcher
	stopSig   func()
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewWatcher loads the spec (an invalid spec at start is an error: there is nothing to
// keep running) and starts watching the file's directory and the reload signal until ctx
// ends or Close is called; Close must be called to release the file watch. The directory is watched, not the file, because editors and
// config managers replace the file by renaming a new one over it.
func NewWatcher(ctx context.Context, cfg WatchConfig) (*Watcher, error) {
	if cfg.Path == "" {
		return nil, errors.New("watch perimeter spec: no path")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, subs: map[chan *Spec]struct{}{}, done: make(chan struct{})}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	s, err := Load(cfg.Path)
	if err != nil {
		return nil, err
	}
	w.current.Store(s)

	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch perimeter spec: %w", err)
	}
	dir := filepath.Dir(cfg.Path)
	if err := fsw.Add(dir); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watch perimeter spec directory %s: %w", dir, err)
	}
	w.fsw = fsw

	sigs := cfg.Signals
	w.stopSig = func() {}
	if sigs == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		w.stopSig = func() { signal.Stop(ch) }
		sigs = ch
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx, sigs)
	return w, nil
}

// Current returns the spec in force. It never blocks and never returns nil.
func (w *Watcher) Current() *Spec { return w.current.Load() }

// Subscribe returns a channel that receives each new spec after it is swapped in. The
// channel holds only the latest: a slow reader skips intermediate specs rather than
// blocking reloads. Call cancel to unsubscribe.
func (w *Watcher) Subscribe() (specs <-chan *Spec, cancel func()) {
	ch := make(chan *Spec, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

// Reload reads the file now and swaps it in if it is valid and different. It returns
// the spec in force afterwards and, when the file was rejected, why.
func (w *Watcher) Reload() (*Spec, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, changed, err := w.reloadLocked()
	if w.cfg.OnReload != nil {
		w.cfg.OnReload(s, changed, err)
	}
	return s, err
}

func (w *Watcher) reloadLocked() (*Spec, bool, error) {
	cur := w.current.Load()
	data, err := readSpec(w.cfg.Path)
	if err != nil {
		// Said once per distinct reason: the resync would repeat it every second.
		if msg := err.Error(); msg != w.refused {
			w.refused = msg
			w.log.Error("perimeter spec refused; keeping the running spec", "file", w.cfg.Path, "error", err)
		}
		return cur, false, err
	}
	w.refused = ""
	digest := sha256.Sum256(data)
	if digest == cur.Digest {
		return cur, false, nil
	}
	next, err := Parse(w.cfg.Path, data)
	if err != nil {
		if digest != w.rejected {
			w.rejected = digest
			var cerr *Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					w.log.Error("perimeter spec rejected; keeping the running spec", "file", w.cfg.Path, "problem", p.String())
				}
			}
		}
		return cur, false, err
	}
	w.current.Store(next)
	for ch := range w.subs {
		select {
		case ch <- next:
		default:
			// Only reloads send, under mu, so after draining the stale spec the send
			// cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- next
		}
	}
	w.log.Info("perimeter spec reloaded", "file", w.cfg.Path, "sha256", fmt.Sprintf("%x", digest[:8]))
	return next, true, nil
}

func readSpec(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open perimeter spec: %w", err)
	}
	defer f.Close()
	if err := checkNotWritable(path, f); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("read perimeter spec %s: %w", path, err)
	}
	return b.Bytes(), nil
}

// ErrWritableSpec is returned (wrapped) when the spec file, or a directory on its path,
// can be written by someone other than its owner: whoever can write the spec decides what
// the perimeter allows, so such a file is not obeyed (as master.key readable beyond its
// owner is not used).
var ErrWritableSpec = errors.New("writable by group or others")

// checkNotWritable refuses a spec that group or others may change: the open file itself
// (its mode as opened, not a name that could be swapped after the check) and every
// directory on its path, as given and with symbolic links resolved, since write access
// to a directory is the power to replace the file in it. A directory with the sticky bit
// (/tmp) is exempt: there others cannot rename or remove entries they do not own.
func checkNotWritable(path string, f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("perimeter spec %s: %w", path, err)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("perimeter spec %s has mode %#o, %w: run chmod go-w %s", path, perm, ErrWritableSpec, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("perimeter spec %s: %w", path, err)
	}
	dirs := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(abs); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		for {
			st, err := os.Stat(dir)
			if err != nil {
				return fmt.Errorf("perimeter spec %s: %w", path, err)
			}
			if perm := st.Mode(); perm.Perm()&0o022 != 0 && perm&os.ModeSticky == 0 {
				return fmt.Errorf("perimeter spec %s: directory %s has mode %#o, %w: run chmod go-w %s", path, dir, perm.Perm(), ErrWritableSpec, dir)
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return nil
}

func (w *Watcher) run(ctx context.Context, sigs <-chan os.Signal) {
	defer close(w.done)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var resync <-chan time.Time
	if w.cfg.Resync > 0 {
		t := time.NewTicker(w.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			w.log.Info("reload signal received", "file", w.cfg.Path)
			w.Reload()
		case _, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			// Any event in the directory may be the file (or, with a Kubernetes
			// ConfigMap, the symlink it resolves through); reloading an unchanged file
			// costs one read and a hash.
			debounce.Reset(w.cfg.Debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Error("watching perimeter spec", "file", w.cfg.Path, "error", err)
		case <-debounce.C:
			w.Reload()
		case <-resync:
			w.resync()
		}
	}
}

// resync reloads when the file's content is neither the running spec nor the last one
// rejected; an unchanged or still-invalid file costs a read and a hash and says nothing.
func (w *Watcher) resync() {
	data, err := readSpec(w.cfg.Path)
	if err != nil {
		return // reported by the reload that file events or a signal trigger
	}
	d := sha256.Sum256(data)
	w.mu.Lock()
	known := d == w.current.Load().Digest || d == w.rejected
	w.mu.Unlock()
	if !known {
		w.Reload()
	}
}

// Close stops watching and waits for the watcher's goroutine to finish. Current keeps
// returning the last spec.
func (w *Watcher) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.cancel()
		<-w.done
		w.stopSig()
		err = w.fsw.Close()
	})
	return err
}
