package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/audit"
)

// Publisher defaults.
const (
	// DefaultPoll is how often a chain at its end is read again: the floor of the
	// latency from a record's write to its publication.
	DefaultPoll = 10 * time.Millisecond
	// DefaultWindow is how many records may await the broker's acknowledgement.
	DefaultWindow = 512
	// ackTimeout bounds waiting for one acknowledgement; the records after the last
	// acknowledged one are then published again (deduplicated).
	ackTimeout = 5 * time.Second
	// saveEvery bounds how often a chain's published position is written to disk
	// while records flow.
	saveEvery = 250 * time.Millisecond
)

// PublisherConfig configures NewPublisher.
type PublisherConfig struct {
	// JetStream publishes; Account names the subjects.
	JetStream jetstream.JetStream
	Account   string
	// Dir is the audit directory; Chains the chains this process writes there.
	Dir    string
	Chains []string
	// StateDir keeps each chain's published position (<chain>.json), so a restarted or
	// reconnected publisher goes on where the broker last acknowledged.
	StateDir string
	Poll     time.Duration
	Window   int
	Logger   *slog.Logger
	// Prepare, when set, runs before publishing starts and again after each failure:
	// it makes sure the stream exists (a broker that was not reachable, or a cluster
	// without a leader yet, when the process started).
	Prepare func(ctx context.Context) error
}

// Publisher publishes the records of its process's chains. Run it with Run.
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger

	mu  sync.Mutex
	pos map[string]Position // acknowledged position per chain
	err map[string]error    // why a chain is not being published, while it is not
}

// Position is how far the broker has acknowledged a chain: the last record's seq and
// hash (0 and "": none yet).
type Position struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Parts is, per partition, the last record of the chain published there (the
	// HeaderPartPrev of the next); Gaps the partitions whose next record carries
	// HeaderGap (bit i: partition i).
	Parts []Link `json:"parts"`
	Gaps  uint32 `json:"gaps,omitempty"`
}

// fill gives pos a link per partition (a position saved without them: none yet).
func (pos *Position) fill() {
	if len(pos.Parts) != Partitions {
		pos.Parts = make([]Link, Partitions)
	}
	for i := range pos.Parts {
		if pos.Parts[i].Hash == "" {
			pos.Parts[i].Hash = zeroHash
		}
	}
}

// zeroHash is the prev of a chain's first record: the HeaderPartPrev of a partition's
// first record of the chain.
const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// NewPublisher checks cfg.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.JetStream == nil || cfg.Dir == "" || cfg.StateDir == "" {
		return nil, errors.New("events: a publisher needs JetStream, the audit directory and a state directory")
	}
	if !validAccount(cfg.Account) {
		return nil, fmt.Errorf("events: account %q is not 12 digits", cfg.Account)
	}
	for _, c := range cfg.Chains {
		if !audit.ValidChain(c) {
			return nil, fmt.Errorf("events: %q is not a chain name", c)
		}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("events: state directory: %w", err)
	}
	return &Publisher{cfg: cfg, log: cfg.Logger.With("component", "events"), pos: map[string]Position{}, err: map[string]error{}}, nil
}

// Run publishes every chain until ctx ends. A chain whose publication fails (the broker
// unreachable, its acknowledgement late) starts again from its last acknowledged record
// after a pause: what the broker already holds is deduplicated by Nats-Msg-Id.
func (p *Publisher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range p.cfg.Chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.runChain(ctx, c)
		}()
	}
	wg.Wait()
}

// Positions returns each chain's acknowledged position.
func (p *Publisher) Positions() map[string]Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Position, len(p.pos))
	for c, pos := range p.pos {
		out[c] = pos
	}
	return out
}

// Failing returns, per chain, why it is not being published now (nil: all are).
func (p *Publisher) Failing() map[string]error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.err) == 0 {
		return nil
	}
	out := make(map[string]error, len(p.err))
	for c, err := range p.err {
		out[c] = err
	}
	return out
}

func (p *Publisher) runChain(ctx context.Context, chain string) {
	pos, err := p.load(chain)
	if err != nil {
		p.log.Error("events: published position unreadable; publishing the chain from its first record (the broker and the consumers drop what they hold)", "chain", chain, "error", err)
	}
	p.setPos(chain, pos)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		before := pos
		var err error
		if p.cfg.Prepare != nil {
			err = p.cfg.Prepare(ctx)
		}
		if err == nil {
			err = p.publish(ctx, chain, &pos)
		}
		p.save(chain, pos)
		if ctx.Err() != nil {
			return
		}
		p.setErr(chain, err)
		if pos.Seq != before.Seq {
			wait = 100 * time.Millisecond
		}
		p.log.Warn("events: publishing stopped; starting again from the last acknowledged record", "chain", chain, "after_seq", pos.Seq, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// inflight is a record published and not yet acknowledged.
type inflight struct {
	ack  jetstream.PubAckFuture
	seq  uint64
	hash string
	part int
	gap  bool
}

// publish reads chain after *pos and publishes each record, advancing *pos as the broker
// acknowledges them in order, until ctx ends or a publication fails.
func (p *Publisher) publish(ctx context.Context, chain string, pos *Position) error {
	rd, err := audit.NewReader(p.cfg.Dir, chain, pos.Seq)
	if err != nil {
		return err
	}
	defer rd.Close()
	if pos.Seq > 0 {
		rd.ExpectAfter(pos.Hash)
	}
	pos.fill()
	// parts and gaps run ahead of pos by the records awaiting acknowledgement.
	parts, gaps := slices.Clone(pos.Parts), pos.Gaps
	var pending []inflight
	lastSave, saved := time.Now(), pos.Seq
	// settle takes acknowledgements in order: all of them (block), or those already in.
	settle := func(block bool) error {
		for len(pending) > 0 {
			f := pending[0]
			if err := awaitAck(ctx, f, block); errors.Is(err, errNotYet) {
				return nil
			} else if err != nil {
				return err
			}
			pos.Seq, pos.Hash = f.seq, f.hash
			pos.Parts[f.part] = Link{Seq: f.seq, Hash: f.hash}
			if f.gap {
				pos.Gaps &^= 1 << f.part
			}
			pending = pending[1:]
		}
		return nil
	}
	defer func() { p.setPos(chain, *pos) }()
	var line []byte
	for {
		e, err := rd.Next()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if err := settle(true); err != nil {
				return err
			}
			p.setPos(chain, *pos)
			p.setErr(chain, nil)
			if pos.Seq != saved && time.Since(lastSave) >= saveEvery {
				p.save(chain, *pos)
				lastSave, saved = time.Now(), pos.Seq
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(p.cfg.Poll):
			}
			continue
		default:
			if d, ok := errors.AsType[*audit.Damage](err); ok && d.Next != nil {
				// Records missing from the chain: consumers find the gap in the
				// published sequence and raise it; publish on from after it.
				p.log.Error("events: audit chain damaged; publishing on after the gap", "chain", chain, "damage", d.Describe())
				if err := rd.Accept(d); err != nil {
					return err
				}
				gaps = 1<<Partitions - 1
				continue
			}
			if d, ok := errors.AsType[*audit.Damage](err); ok {
				if rp, ok := audit.Resume(p.cfg.Dir, chain, max(d.Segment, 1)); ok && rp.Seq > pos.Seq {
					if err := settle(true); err != nil {
						return err
					}
					p.log.Error("events: audit chain damaged; publishing on from where its writer continued it", "chain", chain, "damage", d.Describe(), "after_seq", rp.Seq)
					pos.Seq, pos.Hash, pos.Gaps = rp.Seq, rp.Hash, 1<<Partitions-1
					return fmt.Errorf("chain damaged: %s", d.Describe())
				}
			}
			return err
		}
		line = e.Record.AppendLine(line[:0])
		source, part := Route(e.Record)
		msg := &nats.Msg{
			Subject: Subject(p.cfg.Account, chain, source, part),
			Data:    append([]byte(nil), line...),
			Header: nats.Header{
				HeaderChain:    {chain},
				HeaderSeq:      {strconv.FormatUint(e.Seq, 10)},
				HeaderPrev:     {e.Record.Prev},
				HeaderHash:     {e.Record.Hash},
				HeaderMsgID:    {MsgID(p.cfg.Account, chain, e.Record)},
				HeaderPartPrev: {parts[part].String()},
			},
		}
		gap := gaps&(1<<part) != 0
		if gap {
			msg.Header.Set(HeaderGap, "1")
		}
		// The stream keeps what it takes in the order it takes it. A record published
		// while the connection is down waits in the client's buffer and goes out on
		// reconnect, when the broker may refuse the first ones (its JetStream still
		// starting) and take later ones: published again, the first would land after
		// them. So nothing is published on a connection that is down, and a burst
		// starts with one record acknowledged before the rest follow it.
		if nc := p.cfg.JetStream.Conn(); nc != nil && !nc.IsConnected() {
			if err := settle(true); err != nil {
				return err
			}
			return fmt.Errorf("publish record seq %d: %w", e.Seq, nats.ErrDisconnected)
		}
		f, err := p.cfg.JetStream.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("publish record seq %d: %w", e.Seq, err)
		}
		pending = append(pending, inflight{ack: f, seq: e.Seq, hash: e.Record.Hash, part: part, gap: gap})
		parts[part] = Link{Seq: e.Seq, Hash: e.Record.Hash}
		gaps &^= 1 << part
		if err := settle(len(pending) == 1 || len(pending) >= p.cfg.Window); err != nil {
			return err
		}
		if pos.Seq != saved && time.Since(lastSave) >= saveEvery {
			p.save(chain, *pos)
			lastSave, saved = time.Now(), pos.Seq
		}
	}
}

// errNotYet is awaitAck's answer, not blocking, for an acknowledgement still to come.
var errNotYet = errors.New("not acknowledged yet")

// awaitAck waits for f's acknowledgement (block), or looks whether it came.
func awaitAck(ctx context.Context, f inflight, block bool) error {
	if !block {
		select {
		case <-f.ack.Ok():
			return nil
		case err := <-f.ack.Err():
			return fmt.Errorf("record seq %d not acknowledged: %w", f.seq, err)
		default:
			return errNotYet
		}
	}
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case <-f.ack.Ok():
		return nil
	case err := <-f.ack.Err():
		return fmt.Errorf("record seq %d not acknowledged: %w", f.seq, err)
	case <-t.C:
		return fmt.Errorf("record seq %d not acknowledged in %s", f.seq, ackTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Publisher) setPos(chain string, pos Position) {
	pos.Parts = slices.Clone(pos.Parts)
	p.mu.Lock()
	p.pos[chain] = pos
	p.mu.Unlock()
}

func (p *Publisher) setErr(chain string, err error) {
	p.mu.Lock()
	if err == nil {
		delete(p.err, chain)
	} else {
		p.err[chain] = err
	}
	p.mu.Unlock()
}

func (p *Publisher) path(chain string) string {
	return filepath.Join(p.cfg.StateDir, chain+".json")
}

// load reads chain's published position (none yet: the zero Position).
func (p *Publisher) load(chain string) (Position, error) {
	var pos Position
	b, err := os.ReadFile(p.path(chain))
	if errors.Is(err, os.ErrNotExist) {
		return pos, nil
	}
	if err != nil {
		return pos, err
	}
	if err := json.Unmarshal(b, &pos); err != nil {
		return Position{}, fmt.Errorf("%s: %w", p.path(chain), err)
	}
	return pos, nil
}

// save writes chain's published position; a failure is logged (the position on disk
// stays behind, so records are published again: deduplicated, never lost).
func (p *Publisher) save(chain string, pos Position) {
	b, _ := json.Marshal(pos)
	if err := atomicfile.Write(p.path(chain), b, 0o600); err != nil {
		p.log.Error("events: published position not saved", "chain", chain, "error", err)
	}
}
