package config

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	specV1 = "version: 1\naccount: \"123456789012\"\nregion: us-east-1\n"
	specV2 = "version: 1\naccount: \"123456789012\"\nregion: eu-west-1\n"
	specV3 = "version: 1\naccount: \"123456789012\"\nregion: ap-south-1\n"
	// specBad is a valid YAML file with an invalid region: the watcher must reject it.
	specBad = "version: 1\naccount: \"123456789012\"\nregion: Mars\n"
)

type reloadEvent struct {
	spec    *Spec
	changed bool
	err     error
}

// startWatcher writes initial to a fresh directory and watches it, reporting every
// reload attempt on the returned channel.
func startWatcher(t *testing.T, initial string, sigs chan os.Signal, debounce time.Duration) (*Watcher, string, chan reloadEvent) {
	t.Helper()
	return startWatcherLog(t, initial, sigs, debounce, nil)
}

func startWatcherLog(t *testing.T, initial string, sigs chan os.Signal, debounce time.Duration, log *slog.Logger) (*Watcher, string, chan reloadEvent) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "perimeter.yaml")
	if err := os.WriteFile(path, []byte(initial), 0o600); err != nil {
		t.Fatal(err)
	}
	events := make(chan reloadEvent, 100)
	w, err := NewWatcher(context.Background(), WatchConfig{
		Path:     path,
		Logger:   log,
		Signals:  sigs,
		Debounce: debounce,
		OnReload: func(s *Spec, changed bool, err error) { events <- reloadEvent{s, changed, err} },
	})
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w, path, events
}

// waitReload returns the next reload attempt that changed the spec or failed, skipping
// no-op reloads of an unchanged file.
func waitReload(t *testing.T, events chan reloadEvent) reloadEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.changed || ev.err != nil {
				return ev
			}
		case <-deadline:
			t.Fatal("no reload within 5s")
		}
	}
}

func TestWatcherRejectsBadInitialSpec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "perimeter.yaml")
	if err := os.WriteFile(path, []byte(specBad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewWatcher(context.Background(), WatchConfig{Path: path, Signals: make(chan os.Signal)})
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
}

func TestWatcherSignalReload(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	var logs syncBuffer
	// A debounce of an hour keeps the file watch from reloading: only the signal can.
	w, path, events := startWatcherLog(t, specV1, sigs, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	specs, unsubscribe := w.Subscribe()
	defer unsubscribe()
	old := w.Current()

	if err := os.WriteFile(path, []byte(specV2), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		t.Fatalf("reloaded without a signal: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	if w.Current() != old {
		t.Fatal("spec changed without a signal")
	}
	sigs <- os.Interrupt // any value: the channel is the request
	ev := waitReload(t, events)
	if ev.err != nil || ev.spec.Region != "eu-west-1" || w.Current() != ev.spec {
		t.Fatalf("signal reload = %+v, current region %s", ev, w.Current().Region)
	}
	if got := <-specs; got != ev.spec {
		t.Errorf("subscriber got %p, want %p", got, ev.spec)
	}

	// A bad file on signal: rejected with the located problem, the old spec stays and
	// subscribers hear nothing.
	if err := os.WriteFile(path, []byte(specBad), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- os.Interrupt
	ev = waitReload(t, events)
	var cerr *Error
	if !errors.As(ev.err, &cerr) || !strings.Contains(ev.err.Error(), "perimeter.yaml:3:9: region: \"Mars\" is not a region name") {
		t.Fatalf("bad reload err = %v", ev.err)
	}
	if w.Current().Region != "eu-west-1" || ev.spec != w.Current() {
		t.Fatalf("bad file replaced the running spec: region %s", w.Current().Region)
	}
	select {
	case s := <-specs:
		t.Fatalf("subscriber notified of a rejected file: %s", s.Region)
	default:
	}
	if want := `msg="perimeter spec rejected; keeping the running spec"`; !strings.Contains(logs.String(), want) ||
		!strings.Contains(logs.String(), `region: \"Mars\" is not a region name`) {
		t.Errorf("rejection not logged with its problem:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the watcher's goroutine to write while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatcherFileReload(t *testing.T) {
	w, path, events := startWatcher(t, specV1, make(chan os.Signal), 20*time.Millisecond)
	specs, unsubscribe := w.Subscribe()
	defer unsubscribe()

	t.Run("write in place", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(specV2), 0o600); err != nil {
			t.Fatal(err)
		}
		ev := waitReload(t, events)
		if ev.err != nil || w.Current().Region != "eu-west-1" {
			t.Fatalf("reload = %+v", ev)
		}
		if s := <-specs; s.Region != "eu-west-1" {
			t.Errorf("subscriber got %s", s.Region)
		}
	})
	t.Run("bad file keeps the old spec", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(specBad), 0o600); err != nil {
			t.Fatal(err)
		}
		ev := waitReload(t, events)
		if ev.err == nil || w.Current().Region != "eu-west-1" {
			t.Fatalf("bad file: err %v, region %s", ev.err, w.Current().Region)
		}
	})
	t.Run("removed file keeps the old spec", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		ev := waitReload(t, events)
		if !errors.Is(ev.err, os.ErrNotExist) || w.Current().Region != "eu-west-1" {
			t.Fatalf("removed file: err %v, region %s", ev.err, w.Current().Region)
		}
	})
	t.Run("rename over the file, as editors save", func(t *testing.T) {
		tmp := filepath.Join(filepath.Dir(path), ".perimeter.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(specV3), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		ev := waitReload(t, events)
		if ev.err != nil || w.Current().Region != "ap-south-1" {
			t.Fatalf("rename reload = %+v", ev)
		}
		if s := <-specs; s.Region != "ap-south-1" {
			t.Errorf("subscriber got %s", s.Region)
		}
	})
}

// TestWatcherConcurrentReaders runs readers against reloads under the race detector:
// every read sees a whole spec.
func TestWatcherConcurrentReaders(t *testing.T) {
	w, path, _ := startWatcher(t, specV1, make(chan os.Signal), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := w.Current()
				if s == nil || (s.Region != "us-east-1" && s.Region != "eu-west-1") {
					t.Errorf("reader saw %+v", s)
					return
				}
			}
		}()
	}
	for i := range 20 {
		content := specV1
		if i%2 == 0 {
			content = specV2
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
}

func TestWatcherCloseStopsReloading(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	w, path, events := startWatcher(t, specV1, sigs, 10*time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(specV2), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- os.Interrupt
	select {
	case ev := <-events:
		t.Fatalf("reloaded after Close: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	if w.Current().Region != "us-east-1" {
		t.Errorf("spec changed after Close")
	}
}

// TestWatcherResyncCatchesMissedEvents: the file is a symlink into another directory, so
// writes to its target raise no event where the watcher looks; the periodic resync
// picks the change up anyway, and without it the change is missed.
func TestWatcherResyncCatchesMissedEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resync time.Duration
		want   string
	}{
		{"with resync", 100 * time.Millisecond, "eu-west-1"},
		{"without resync", -1, "us-east-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "real.yaml")
			if err := os.WriteFile(target, []byte(specV1), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "perimeter.yaml")
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			w, err := NewWatcher(context.Background(), WatchConfig{Path: path, Signals: make(chan os.Signal), Resync: tc.resync})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if w.Current().Region != "us-east-1" {
				t.Fatalf("initial region %s", w.Current().Region)
			}
			if err := os.WriteFile(target, []byte(specV2), 0o600); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) && w.Current().Region != tc.want {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // and it stays so
			if got := w.Current().Region; got != tc.want {
				t.Errorf("region %s one second after the write, want %s", got, tc.want)
			}
		})
	}
}

// TestWritableSpecRefused (issue 15, attack 7): a spec that group or others could
// rewrite is not obeyed, at start (Load) and at reload (the running spec stays), like a
// master key readable beyond its owner. A directory with the sticky bit (/tmp) is fine:
// nobody else can replace what is in it.
func TestWritableSpecRefused(t *testing.T) {
	write := func(t *testing.T, dir string, dirMode, fileMode os.FileMode) string {
		t.Helper()
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "perimeter.yaml")
		if err := os.WriteFile(path, []byte(specV1), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, fileMode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name              string
		dirMode, fileMode os.FileMode
		refused           bool
	}{
		{"owner only", 0o700, 0o600, false},
		{"readable by all", 0o755, 0o644, false},
		{"file writable by others", 0o700, 0o666, true},
		{"file writable by group", 0o700, 0o620, true},
		{"directory writable by others", 0o777, 0o644, true},
		{"directory writable by group", 0o770, 0o600, true},
		{"sticky directory writable by all", 0o777 | os.ModeSticky, 0o644, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spec")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := write(t, dir, tc.dirMode, tc.fileMode)
			_, err := Load(path)
			if got := errors.Is(err, ErrWritableSpec); got != tc.refused {
				t.Fatalf("Load: %v; want refused %v", err, tc.refused)
			}
			if tc.refused && !strings.Contains(err.Error(), "chmod go-w") {
				t.Errorf("the error does not say what to do: %v", err)
			}
		})
	}
	t.Run("through a symbolic link in a writable directory", func(t *testing.T) {
		root := t.TempDir()
		real := write(t, filepath.Join(root), 0o700, 0o600)
		links := filepath.Join(root, "links")
		if err := os.Mkdir(links, 0o700); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(links, "perimeter.yaml")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(link); err != nil {
			t.Fatalf("a link in a private directory: %v", err)
		}
		os.Chmod(links, 0o777)
		if _, err := Load(link); !errors.Is(err, ErrWritableSpec) {
			t.Fatalf("a link in a world-writable directory: %v", err)
		}
	})
	t.Run("reload keeps the running spec", func(t *testing.T) {
		var logs syncBuffer
		w, path, events := startWatcherLog(t, specV1, nil, 10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
		// The attack: the file made world-writable and rewritten to widen clockSkew.
		if err := os.Chmod(filepath.Dir(path), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(specV1+"gateway: {clockSkew: 15m}\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, 0o666)
		if _, err := w.Reload(); !errors.Is(err, ErrWritableSpec) {
			t.Fatalf("reload: %v", err)
		}
		ev := waitReload(t, events)
		if ev.err == nil || ev.spec.Gateway.ClockSkew != 5*time.Minute || w.Current().Gateway.ClockSkew != 5*time.Minute {
			t.Fatalf("the writable spec was applied: %+v, current clockSkew %s", ev, w.Current().Gateway.ClockSkew)
		}
		w.Reload()
		if n := strings.Count(logs.String(), "perimeter spec refused"); n != 1 {
			t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
		}
		// Fixed: the same content is applied.
		os.Chmod(path, 0o600)
		os.Chmod(filepath.Dir(path), 0o700)
		if s, err := w.Reload(); err != nil || s.Gateway.ClockSkew != 15*time.Minute {
			t.Fatalf("after chmod: %v, clockSkew %s", err, s.Gateway.ClockSkew)
		}
	})
}
