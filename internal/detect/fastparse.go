package detect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// A hand-written decoder for the shapes CloudTrail files have, several times faster than
// encoding/json's reflection. It handles the common case only: on anything unusual (an
// escaped or non-ASCII key, a key that differs from a field's name only in case, a
// repeated field, a value of an unexpected type, a non-object record, nesting deeper
// than maxFastDepth) it gives up and ParseEvents decodes the file with encoding/json
// instead, so both paths give the same events (FuzzFastParse, TestFastParseDatasets and
// TestFastParseGenerated hold them equal).
//
// What repeats from event to event is decoded once and shared (decodeCache): strings
// such as event names and user agents, and whole userIdentity and tlsDetails values,
// keyed by their JSON text: the events of one session carry the same userIdentity, so
// they share one *audit.SessionContext. Decoded events are read-only.

var errSlow = errors.New("detect: not for the fast decoder")

// maxFastDepth bounds the nesting the fast decoder follows (encoding/json refuses past
// 10000 levels; deeper than this, it decides).
const maxFastDepth = 512

// Bounds of a decodeCache: past them a table is emptied and fills again.
const (
	maxInterned   = 8192
	maxIdentities = 4096
	maxTLS        = 64
	maxObjects    = 4096
	// maxSharedObject is the longest requestParameters (responseElements,
	// additionalEventData) text decoded once for all events that carry it: the
	// parameters of routine calls repeat (a workload reading its secret, a poller's
	// filters); long ones rarely do.
	maxSharedObject = 256
)

// decodeCache is what a decoder keeps from one file (or record) to the next.
type decodeCache struct {
	strs map[string]string             // low-cardinality field values
	last [nEventFields]string          // an event field's value in the record before
	ids  textCache[audit.UserIdentity] // userIdentity JSON -> its value
	tls  map[string]*audit.TLSDetails  // tlsDetails JSON -> its value
	objs map[string]map[string]any     // short requestParameters (and the like) JSON -> its value
}

func newDecodeCache() *decodeCache {
	return &decodeCache{strs: make(map[string]string, 256), ids: textCache[audit.UserIdentity]{max: maxIdentities},
		tls: make(map[string]*audit.TLSDetails, 4), objs: make(map[string]map[string]any, 256)}
}

// textCache maps the JSON text of objects decoded before to their values. A lookup
// needs no scan for the end of the object at hand: candidates are found by the first
// textKeyLen bytes of the input, and one whose whole text starts the input is the
// object there (an object's text ends at its closing brace; the text was valid when it
// was decoded). Texts shorter than textKeyLen are not kept: their key would take in
// bytes past their end.
type textCache[V any] struct {
	m   map[string][]textEntry[V]
	n   int // entries
	max int
}

type textEntry[V any] struct {
	text string
	v    V
}

const (
	textKeyLen    = 128
	textBucketLen = 4 // texts kept per key (sessions of one role share long prefixes)
)

// lookup returns the value of the object text b starts with, and the text's length.
func (c *textCache[V]) lookup(b []byte) (V, int, bool) {
	if len(b) >= textKeyLen {
		for _, e := range c.m[string(b[:textKeyLen])] {
			if len(e.text) <= len(b) && string(b[:len(e.text)]) == e.text {
				return e.v, len(e.text), true
			}
		}
	}
	var zero V
	return zero, 0, false
}

// add keeps text's value.
func (c *textCache[V]) add(text []byte, v V) {
	if len(text) < textKeyLen {
		return
	}
	if c.m == nil || c.n >= c.max {
		c.m, c.n = make(map[string][]textEntry[V], 64), 0
	}
	k := string(text[:textKeyLen])
	bucket := c.m[k]
	if len(bucket) >= textBucketLen {
		bucket = append(bucket[:0], bucket[1:]...)
		c.n--
	}
	c.m[k] = append(bucket, textEntry[V]{string(text), v})
	c.n++
}

type fastParser struct {
	b     []byte
	i     int
	c     *decodeCache
	depth int
	// files: the input is a file (ParseEvents): eventTime may also be in Panther's
	// layout (fileTime), @timestamp stands in for a missing one. Audit records
	// (EventDecoder) are Phantom's own: RFC 3339 only, as encoding/json reads them.
	files bool
	// slab is where a file's events are allocated from, a run of them at a time (a
	// trail is hundreds of thousands of events: one allocation each is GC work).
	slab []audit.Event
}

// newEvent returns a zeroed event: for files, from p.slab, refilled for about the
// events left in the input (at least one per eventSlabBytes of it, at most
// maxEventSlab); else on its own (a chain record is one event at a time). An event
// kept keeps its run alive: no more than the batch it came with.
func (p *fastParser) newEvent() *audit.Event {
	if !p.files {
		return new(audit.Event)
	}
	if len(p.slab) == 0 {
		n := min(max((len(p.b)-p.i)/eventSlabBytes, 1), maxEventSlab)
		p.slab = make([]audit.Event, n)
	}
	ev := &p.slab[0]
	p.slab = p.slab[1:]
	return ev
}

// An event as CloudTrail writes it takes 1 to 2 KB of JSON; a slab for what is left of
// the input at one event a KB holds no more than it needs, mostly.
const (
	eventSlabBytes = 1024
	maxEventSlab   = 128
)

// fastParse decodes data (already trimmed, non-empty) into events, or fails with errSlow.
func fastParse(data []byte, c *decodeCache) ([]*audit.Event, error) {
	p := &fastParser{b: data, c: c, files: true}
	var out []*audit.Event
	if data[0] == '[' {
		p.i++
		p.ws()
		if p.peek() == ']' {
			return out, nil
		}
		for {
			ev, err := p.event()
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
			p.ws()
			switch p.next() {
			case ',':
				p.ws()
			case ']':
				return out, nil
			default:
				return nil, errSlow
			}
		}
	}
	for {
		p.ws()
		if p.i >= len(p.b) {
			return out, nil
		}
		if p.peek() != '{' {
			return nil, errSlow
		}
		var err error
		out, err = p.topValue(out)
		if err != nil {
			return nil, err
		}
	}
}

func (p *fastParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *fastParser) next() byte {
	if p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		return c
	}
	return 0
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// enter counts one more level of nesting; false past maxFastDepth.
func (p *fastParser) enter() bool {
	p.depth++
	return p.depth <= maxFastDepth
}

// plainRun returns how many bytes from i are plain string content: not a quote, a
// backslash, a control character or non-ASCII. Eight bytes at a time (SWAR: "determine
// if a word has a byte less than n", Bit Twiddling Hacks), then one by one.
func plainRun(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	start := i
	for i+8 <= len(b) {
		w := binary.LittleEndian.Uint64(b[i:])
		q := w ^ ('"' * ones)
		bs := w ^ ('\\' * ones)
		if ((w-0x20*ones)|(q-ones)|(bs-ones)|w)&highs != 0 {
			break
		}
		i += 8
	}
	for i < len(b) {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
		i++
	}
	return i - start
}

// rawString returns the bytes of a plain string (ASCII, no escapes) at p.i, or errSlow.
func (p *fastParser) rawString() ([]byte, error) {
	if p.next() != '"' {
		return nil, errSlow
	}
	start := p.i
	p.i += plainRun(p.b, p.i)
	if p.i < len(p.b) && p.b[p.i] == '"' {
		s := p.b[start:p.i]
		p.i++
		return s, nil
	}
	return nil, errSlow
}

// skipString passes over a string at p.i, checking it as encoding/json does: escapes
// are valid, no control characters (other bytes pass, as encoding/json takes them).
func (p *fastParser) skipString() error {
	if p.next() != '"' {
		return errSlow
	}
	for {
		p.i += plainRun(p.b, p.i)
		if p.i >= len(p.b) {
			return errSlow
		}
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return errSlow
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.b) {
					return errSlow
				}
				for _, h := range p.b[p.i+2 : p.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return errSlow
					}
				}
				p.i += 6
			default:
				return errSlow
			}
		case c < 0x20:
			return errSlow
		default: // non-ASCII
			p.i++
		}
	}
}

// str decodes a string; non-plain strings go through encoding/json.
func (p *fastParser) str() (string, error) {
	start := p.i
	b, err := p.rawString()
	if err == nil {
		return string(b), nil
	}
	p.i = start
	if err := p.skipString(); err != nil {
		return "", err
	}
	// Escapes or non-ASCII: let encoding/json decode exactly (invalid UTF-8 and all).
	var s string
	if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
		return "", errSlow
	}
	return s, nil
}

// How optStr keeps a string: a fresh copy, one copy of each value (decodeCache.strs),
// or, 0 and up, interned and remembered in that slot of decodeCache.last: most fields
// hold the value they held in the record before, taken then without a lookup.
const (
	copied   = -1
	interned = -2
)

// istr is str for low-cardinality fields: one copy of each distinct value.
func (p *fastParser) istr(slot int) (string, error) {
	start := p.i
	b, err := p.rawString()
	if err != nil {
		p.i = start
		return p.str()
	}
	if slot >= 0 && p.c.last[slot] == string(b) {
		return p.c.last[slot], nil
	}
	s := p.intern(b)
	if slot >= 0 {
		p.c.last[slot] = s
	}
	return s, nil
}

// intern returns the one copy of b's text.
func (p *fastParser) intern(b []byte) string {
	if s, ok := p.c.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(p.c.strs) >= maxInterned {
		clear(p.c.strs)
	}
	p.c.strs[s] = s
	return s
}

func (p *fastParser) isNull() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// optStr decodes a string field, kept as how says (copied, interned or a slot); null
// leaves it empty.
func (p *fastParser) optStr(dst *string, how int) error {
	if p.isNull() {
		return nil
	}
	var err error
	if how == copied {
		*dst, err = p.str()
	} else {
		*dst, err = p.istr(how)
	}
	return err
}

// object walks an object's members, calling fn with each key (p.i at the value).
func (p *fastParser) object(fn func(key []byte) error) error {
	if p.next() != '{' {
		return errSlow
	}
	if !p.enter() {
		return errSlow
	}
	p.ws()
	if p.peek() == '}' {
		p.i++
		p.depth--
		return nil
	}
	for {
		p.ws()
		k, err := p.rawString()
		if err != nil {
			return err
		}
		p.ws()
		if p.next() != ':' {
			return errSlow
		}
		p.ws()
		if err := fn(k); err != nil {
			return err
		}
		p.ws()
		switch p.next() {
		case ',':
		case '}':
			p.depth--
			return nil
		default:
			return errSlow
		}
	}
}

// unknown handles a key no field has: skipped, unless encoding/json would match it to a
// field case-insensitively.
func (p *fastParser) unknown(k []byte, fields ...string) error {
	for _, f := range fields {
		if len(f) == len(k) && strings.EqualFold(string(k), f) {
			return errSlow
		}
	}
	return p.skip()
}

// seen guards against repeated fields (encoding/json merges repeated maps).
type seen uint64

func (s *seen) once(bit int) error {
	if *s&(1<<bit) != 0 {
		return errSlow
	}
	*s |= 1 << bit
	return nil
}

// nEventFields is len(eventFields).
const nEventFields = 23

var eventFields = [nEventFields]string{"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
	"sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements",
	"additionalEventData", "requestID", "eventID", "readOnly", "eventType", "managementEvent", "recipientAccountId",
	"eventCategory", "vpcEndpointId", "tlsDetails", "@timestamp"}

// eventFieldBit is the index of k in eventFields, or -1 (a switch, not a loop: the
// compiler makes it a binary search).
func eventFieldBit(k []byte) int {
	switch string(k) {
	case "eventVersion":
		return 0
	case "userIdentity":
		return 1
	case "eventTime":
		return 2
	case "eventSource":
		return 3
	case "eventName":
		return 4
	case "awsRegion":
		return 5
	case "sourceIPAddress":
		return 6
	case "userAgent":
		return 7
	case "errorCode":
		return 8
	case "errorMessage":
		return 9
	case "requestParameters":
		return 10
	case "responseElements":
		return 11
	case "additionalEventData":
		return 12
	case "requestID":
		return 13
	case "eventID":
		return 14
	case "readOnly":
		return 15
	case "eventType":
		return 16
	case "managementEvent":
		return 17
	case "recipientAccountId":
		return 18
	case "eventCategory":
		return 19
	case "vpcEndpointId":
		return 20
	case "tlsDetails":
		return 21
	case "@timestamp":
		return 22
	}
	return -1
}

// eventMember decodes one member of an event object into ev, its @timestamp into ts.
func (p *fastParser) eventMember(ev *audit.Event, ts *string, k []byte, s *seen) error {
	bit := eventFieldBit(k)
	if bit >= 0 {
		if err := s.once(bit); err != nil {
			return err
		}
		switch bit {
		case 0:
			return p.optStr(&ev.EventVersion, bit)
		case 1:
			return p.userIdentity(&ev.UserIdentity)
		case 2:
			if p.isNull() {
				return nil
			}
			start := p.i
			if _, err := p.rawString(); err != nil {
				return err
			}
			t, err := parseTime(p.b[start:p.i], p.files)
			if err != nil {
				return errSlow
			}
			ev.EventTime = t
			return nil
		case 3:
			return p.optStr(&ev.EventSource, bit)
		case 4:
			return p.optStr(&ev.EventName, bit)
		case 5:
			return p.optStr(&ev.AWSRegion, bit)
		case 6:
			return p.optStr(&ev.SourceIPAddress, bit)
		case 7:
			return p.optStr(&ev.UserAgent, bit)
		case 8:
			return p.optStr(&ev.ErrorCode, bit)
		case 9:
			return p.optStr(&ev.ErrorMessage, copied)
		case 10:
			return p.objectMap(&ev.RequestParameters)
		case 11:
			return p.objectMap(&ev.ResponseElements)
		case 12:
			return p.objectMap(&ev.AdditionalEventData)
		case 13:
			return p.optStr(&ev.RequestID, copied)
		case 14:
			return p.optStr(&ev.EventID, copied)
		case 15:
			return p.boolean(&ev.ReadOnly)
		case 16:
			return p.optStr(&ev.EventType, bit)
		case 17:
			return p.boolean(&ev.ManagementEvent)
		case 18:
			return p.optStr(&ev.RecipientAccountID, bit)
		case 19:
			return p.optStr(&ev.EventCategory, bit)
		case 20:
			return p.optStr(&ev.VPCEndpointID, bit)
		case 21:
			return p.tlsDetails(&ev.TLSDetails)
		case 22:
			return p.optStr(ts, copied)
		}
	}
	return p.unknown(k, eventFields[:]...)
}

func first(s *seen, bit int, err error) error {
	if err != nil {
		return err
	}
	return s.once(bit)
}

func (p *fastParser) boolean(dst *bool) error {
	switch {
	case p.isNull():
	case len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true":
		p.i += 4
		*dst = true
	case len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false":
		p.i += 5
		*dst = false
	default:
		return errSlow
	}
	return nil
}

func (p *fastParser) event() (*audit.Event, error) {
	ev := p.newEvent()
	var ts string
	var s seen
	err := p.object(func(k []byte) error { return p.eventMember(ev, &ts, k, &s) })
	p.timestamp(ev, ts)
	return ev, err
}

// timestamp gives an event of a file without eventTime its @timestamp (Logstash's).
func (p *fastParser) timestamp(ev *audit.Event, ts string) {
	if p.files && ev.EventTime.IsZero() && ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			ev.EventTime = t
		}
	}
}

// topValue decodes one top-level object: a log file, a chain record or an event.
func (p *fastParser) topValue(out []*audit.Event) ([]*audit.Event, error) {
	ev := new(audit.Event) // when the object is an event
	var ts string
	var records []*audit.Event
	var inner *audit.Event
	hasRecords := false
	var s seen
	err := p.object(func(k []byte) error {
		switch string(k) {
		case "Records":
			if err := s.once(40); err != nil {
				return err
			}
			if p.isNull() {
				return nil
			}
			hasRecords = true
			records = []*audit.Event{}
			if p.next() != '[' {
				return errSlow
			}
			p.ws()
			if p.peek() == ']' {
				p.i++
				return nil
			}
			for {
				p.ws()
				if p.isNull() {
					records = append(records, nil)
				} else {
					r, err := p.event()
					if err != nil {
						return err
					}
					records = append(records, r)
				}
				p.ws()
				switch p.next() {
				case ',':
				case ']':
					return nil
				default:
					return errSlow
				}
			}
		case "event":
			if err := s.once(41); err != nil {
				return err
			}
			if p.isNull() {
				return nil
			}
			r, err := p.event()
			inner = r
			return err
		}
		if strings.EqualFold(string(k), "Records") || strings.EqualFold(string(k), "event") {
			return errSlow
		}
		return p.eventMember(ev, &ts, k, &s)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case hasRecords:
		for _, r := range records {
			if r != nil {
				out = append(out, r)
			}
		}
	case inner != nil:
		out = append(out, inner)
	default:
		p.timestamp(ev, ts)
		out = append(out, ev)
	}
	return out, nil
}

// userIdentity decodes a userIdentity, or takes the value decoded from the same JSON
// text before.
func (p *fastParser) userIdentity(u *audit.UserIdentity) error {
	if p.isNull() {
		return nil
	}
	if id, n, ok := p.c.ids.lookup(p.b[p.i:]); ok {
		*u = id
		p.i += n
		return nil
	}
	start := p.i
	if err := p.decodeIdentity(u); err != nil {
		return err
	}
	p.c.ids.add(p.b[start:p.i], *u)
	return nil
}

// valueEnd returns where the object or array at i ends, found by counting brackets
// outside strings, without checking the syntax between (callers either decode the
// value, which checks it, or look the text up among texts decoded before); -1 when it
// does not end or i is at neither.
func valueEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '{' && b[i] != '[' {
		return -1
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i++
			for {
				j := bytes.IndexByte(b[i:], '"')
				if j < 0 {
					return -1
				}
				q := i + j
				n := 0 // backslashes before the quote: an odd number escape it
				for k := q - 1; k >= i && b[k] == '\\'; k-- {
					n++
				}
				i = q + 1
				if n%2 == 0 {
					break
				}
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}

var identityFields = []string{"type", "principalId", "arn", "accountId", "accessKeyId", "userName", "identityProvider", "sessionContext"}

func (p *fastParser) decodeIdentity(u *audit.UserIdentity) error {
	var s seen
	return p.object(func(k []byte) error {
		switch string(k) {
		case "type":
			return first(&s, 0, p.optStr(&u.Type, interned))
		case "principalId":
			return first(&s, 1, p.optStr(&u.PrincipalID, copied))
		case "arn":
			return first(&s, 2, p.optStr(&u.ARN, copied))
		case "accountId":
			return first(&s, 3, p.optStr(&u.AccountID, interned))
		case "accessKeyId":
			return first(&s, 4, p.optStr(&u.AccessKeyID, copied))
		case "userName":
			return first(&s, 5, p.optStr(&u.UserName, interned))
		case "identityProvider":
			return first(&s, 6, p.optStr(&u.IdentityProvider, interned))
		case "sessionContext":
			if err := s.once(7); err != nil {
				return err
			}
			if p.isNull() {
				return nil
			}
			u.SessionContext = new(audit.SessionContext)
			return p.sessionContext(u.SessionContext)
		}
		return p.unknown(k, identityFields...)
	})
}

var (
	sessionFields = []string{"sessionIssuer", "attributes", "sourceIdentity", "ec2RoleDelivery"}
	issuerFields  = []string{"type", "principalId", "arn", "accountId", "userName"}
)

func (p *fastParser) sessionContext(c *audit.SessionContext) error {
	var s seen
	return p.object(func(k []byte) error {
		switch string(k) {
		case "sessionIssuer":
			if err := s.once(0); err != nil {
				return err
			}
			if p.isNull() {
				return nil
			}
			si := new(audit.SessionIssuer)
			c.SessionIssuer = si
			var ss seen
			return p.object(func(k []byte) error {
				switch string(k) {
				case "type":
					return first(&ss, 0, p.optStr(&si.Type, interned))
				case "principalId":
					return first(&ss, 1, p.optStr(&si.PrincipalID, interned))
				case "arn":
					return first(&ss, 2, p.optStr(&si.ARN, interned))
				case "accountId":
					return first(&ss, 3, p.optStr(&si.AccountID, interned))
				case "userName":
					return first(&ss, 4, p.optStr(&si.UserName, interned))
				}
				return p.unknown(k, issuerFields...)
			})
		case "attributes":
			if err := s.once(1); err != nil {
				return err
			}
			if p.isNull() {
				return nil
			}
			c.Attributes = make(map[string]string, 2)
			return p.object(func(k []byte) error {
				v, err := p.istr(interned)
				if err != nil {
					return err
				}
				c.Attributes[p.intern(k)] = v
				return nil
			})
		case "sourceIdentity":
			return first(&s, 2, p.optStr(&c.SourceIdentity, copied))
		case "ec2RoleDelivery":
			return first(&s, 3, p.optStr(&c.EC2RoleDelivery, interned))
		}
		return p.unknown(k, sessionFields...)
	})
}

var tlsFields = []string{"tlsVersion", "cipherSuite", "clientProvidedHostHeader"}

// tlsDetails decodes a tlsDetails, or takes the value decoded from the same JSON text
// before (a client's connections repeat theirs).
func (p *fastParser) tlsDetails(dst **audit.TLSDetails) error {
	if p.isNull() {
		return nil
	}
	start := p.i
	if end := valueEnd(p.b, start); end > 0 {
		if t, ok := p.c.tls[string(p.b[start:end])]; ok {
			*dst = t
			p.i = end
			return nil
		}
	}
	t := new(audit.TLSDetails)
	var s seen
	err := p.object(func(k []byte) error {
		switch string(k) {
		case "tlsVersion":
			return first(&s, 0, p.optStr(&t.TLSVersion, interned))
		case "cipherSuite":
			return first(&s, 1, p.optStr(&t.CipherSuite, interned))
		case "clientProvidedHostHeader":
			return first(&s, 2, p.optStr(&t.ClientProvidedHostHeader, interned))
		}
		return p.unknown(k, tlsFields...)
	})
	if err != nil {
		return err
	}
	if len(p.c.tls) >= maxTLS {
		clear(p.c.tls)
	}
	p.c.tls[string(p.b[start:p.i])] = t
	*dst = t
	return nil
}

// objectMap decodes an object into a map (null leaves nil), or takes the map decoded
// from the same short text before.
func (p *fastParser) objectMap(dst *map[string]any) error {
	if p.isNull() {
		return nil
	}
	if p.peek() != '{' {
		return errSlow
	}
	start := p.i
	end := valueEnd(p.b[:min(len(p.b), start+maxSharedObject)], start)
	if end > 0 {
		if m, ok := p.c.objs[string(p.b[start:end])]; ok {
			*dst = m
			p.i = end
			return nil
		}
	}
	v, err := p.value()
	if err != nil {
		return err
	}
	m := v.(map[string]any)
	if end > 0 {
		if len(p.c.objs) >= maxObjects {
			clear(p.c.objs)
		}
		p.c.objs[string(p.b[start:end])] = m
	}
	*dst = m
	return nil
}

// value decodes any JSON value the way encoding/json does into an interface.
func (p *fastParser) value() (any, error) {
	switch c := p.peek(); {
	case c == '{':
		m := make(map[string]any)
		err := p.object(func(k []byte) error {
			v, err := p.value()
			m[string(k)] = v
			return err
		})
		return m, err
	case c == '[':
		p.i++
		if !p.enter() {
			return nil, errSlow
		}
		a := []any{}
		p.ws()
		if p.peek() == ']' {
			p.i++
			p.depth--
			return a, nil
		}
		for {
			p.ws()
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.ws()
			switch p.next() {
			case ',':
			case ']':
				p.depth--
				return a, nil
			default:
				return nil, errSlow
			}
		}
	case c == '"':
		return p.str()
	case c == 't' || c == 'f':
		var b bool
		err := p.boolean(&b)
		return b, err
	case c == 'n':
		if p.isNull() {
			return nil, nil
		}
		return nil, errSlow
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if !p.number() {
			return nil, errSlow
		}
		f, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
		if err != nil {
			return nil, errSlow
		}
		return f, nil
	}
	return nil, errSlow
}

// number passes over a number at p.i, reporting whether it has JSON's grammar
// (RFC 8259 §6): -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *fastParser) number() bool {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.peek() == '-' {
		p.i++
	}
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		digits()
	default:
		return false
	}
	if p.peek() == '.' {
		p.i++
		if digits() == 0 {
			return false
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// skip passes over one value, checking its syntax as encoding/json does, building
// nothing.
func (p *fastParser) skip() error {
	switch c := p.peek(); {
	case c == '{':
		p.i++
		if !p.enter() {
			return errSlow
		}
		p.ws()
		if p.peek() == '}' {
			p.i++
			p.depth--
			return nil
		}
		for {
			p.ws()
			if err := p.skipString(); err != nil {
				return err
			}
			p.ws()
			if p.next() != ':' {
				return errSlow
			}
			p.ws()
			if err := p.skip(); err != nil {
				return err
			}
			p.ws()
			switch p.next() {
			case ',':
			case '}':
				p.depth--
				return nil
			default:
				return errSlow
			}
		}
	case c == '[':
		p.i++
		if !p.enter() {
			return errSlow
		}
		p.ws()
		if p.peek() == ']' {
			p.i++
			p.depth--
			return nil
		}
		for {
			p.ws()
			if err := p.skip(); err != nil {
				return err
			}
			p.ws()
			switch p.next() {
			case ',':
			case ']':
				p.depth--
				return nil
			default:
				return errSlow
			}
		}
	case c == '"':
		return p.skipString()
	case c == 't' || c == 'f':
		var b bool
		return p.boolean(&b)
	case c == 'n':
		if p.isNull() {
			return nil
		}
	case c == '-' || c >= '0' && c <= '9':
		if p.number() {
			return nil
		}
	}
	return errSlow
}

// EventDecoder decodes single CloudTrail events, such as an audit record's event, with
// the fast decoder, falling back to encoding/json for what it leaves; both give the same
// event. It keeps one copy of each repeated string (event names, sources, regions) and
// identity across calls, up to a bound: events of one session share their
// sessionContext, and are read-only. The zero value is ready; it is not safe for
// concurrent use.
type EventDecoder struct {
	c *decodeCache
}

// Decode parses one JSON object into an event.
func (d *EventDecoder) Decode(data []byte) (*audit.Event, error) {
	if d.c == nil {
		d.c = newDecodeCache()
	}
	p := &fastParser{b: data, c: d.c}
	p.ws()
	if p.peek() == '{' {
		if ev, err := p.event(); err == nil { // not p.files: no @timestamp here
			if p.ws(); p.i == len(p.b) {
				return ev, nil
			}
		}
	}
	var ev audit.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}
