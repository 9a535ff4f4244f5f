package detect

import (
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
// repeated field, a value of an unexpected type, a non-object record) it gives up and
// ParseEvents decodes the file with encoding/json instead, so both paths give the same
// events (FuzzFastParse holds them equal).

var errSlow = errors.New("detect: not for the fast decoder")

type fastParser struct {
	b      []byte
	i      int
	intern map[string]string
}

// fastParse decodes data (already trimmed, non-empty) into events, or fails with errSlow.
func fastParse(data []byte) ([]*audit.Event, error) {
	p := &fastParser{b: data, intern: make(map[string]string, 256)}
	var out []*audit.Event
	if data[0] == '[' {
		p.i++
		p.ws()
		if p.peek() == ']' {
			return out, nil
		}
		for {
			w, err := p.event()
			if err != nil {
				return nil, err
			}
			out = appendWire(out, w)
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

func appendWire(out []*audit.Event, w *wireEvent) []*audit.Event {
	if w.Event.EventTime.IsZero() && w.Timestamp != "" {
		if t, err := time.Parse(time.RFC3339Nano, w.Timestamp); err == nil {
			w.Event.EventTime = t
		}
	}
	return append(out, &w.Event)
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

// rawString returns the bytes of a plain string (ASCII, no escapes) at p.i, or errSlow.
func (p *fastParser) rawString() ([]byte, error) {
	if p.next() != '"' {
		return nil, errSlow
	}
	start := p.i
	// Eight bytes at a time while none is a quote, a backslash, a control character or
	// non-ASCII (SWAR: "determine if a word has a byte less than n", Bit Twiddling Hacks).
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for p.i+8 <= len(p.b) {
		w := binary.LittleEndian.Uint64(p.b[p.i:])
		q := w ^ ('"' * ones)
		bs := w ^ ('\\' * ones)
		if ((w-0x20*ones)|(q-ones)|(bs-ones)|w)&highs != 0 {
			break
		}
		p.i += 8
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, nil
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, errSlow
		}
		p.i++
	}
	return nil, errSlow
}

// str decodes a string; non-plain strings go through encoding/json.
func (p *fastParser) str() (string, error) {
	start := p.i
	b, err := p.rawString()
	if err == nil {
		return string(b), nil
	}
	// Escapes or non-ASCII: find the end, let encoding/json decode exactly.
	p.i = start + 1
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '\\':
			p.i += 2
			continue
		case '"':
			p.i++
			var s string
			if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
				return "", errSlow
			}
			return s, nil
		}
		p.i++
	}
	return "", errSlow
}

// istr is str for low-cardinality fields: one copy of each distinct value.
func (p *fastParser) istr() (string, error) {
	start := p.i
	b, err := p.rawString()
	if err != nil {
		p.i = start
		return p.str()
	}
	if s, ok := p.intern[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	if len(p.intern) < 4096 {
		p.intern[s] = s
	}
	return s, nil
}

func (p *fastParser) isNull() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// optStr decodes a string field; null leaves it empty.
func (p *fastParser) optStr(dst *string, intern bool) error {
	if p.isNull() {
		return nil
	}
	var err error
	if intern {
		*dst, err = p.istr()
	} else {
		*dst, err = p.str()
	}
	return err
}

// object walks an object's members, calling fn with each key (p.i at the value).
func (p *fastParser) object(fn func(key []byte) error) error {
	if p.next() != '{' {
		return errSlow
	}
	p.ws()
	if p.peek() == '}' {
		p.i++
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
		if strings.EqualFold(string(k), f) {
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

var eventFields = []string{"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
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

// eventMember decodes one member of an event object into w.
func (p *fastParser) eventMember(w *wireEvent, k []byte, s *seen) error {
	ev := &w.Event
	bit := eventFieldBit(k)
	if bit >= 0 {
		if err := s.once(bit); err != nil {
			return err
		}
		switch eventFields[bit] {
		case "eventVersion":
			return p.optStr(&ev.EventVersion, true)
		case "userIdentity":
			return p.userIdentity(&ev.UserIdentity)
		case "eventTime":
			if p.isNull() {
				return nil
			}
			start := p.i
			if _, err := p.rawString(); err != nil {
				return err
			}
			if err := ev.EventTime.UnmarshalJSON(p.b[start:p.i]); err != nil {
				return errSlow
			}
			return nil
		case "eventSource":
			return p.optStr(&ev.EventSource, true)
		case "eventName":
			return p.optStr(&ev.EventName, true)
		case "awsRegion":
			return p.optStr(&ev.AWSRegion, true)
		case "sourceIPAddress":
			return p.optStr(&ev.SourceIPAddress, true)
		case "userAgent":
			return p.optStr(&ev.UserAgent, true)
		case "errorCode":
			return p.optStr(&ev.ErrorCode, true)
		case "errorMessage":
			return p.optStr(&ev.ErrorMessage, false)
		case "requestParameters":
			return p.objectMap(&ev.RequestParameters)
		case "responseElements":
			return p.objectMap(&ev.ResponseElements)
		case "additionalEventData":
			return p.objectMap(&ev.AdditionalEventData)
		case "requestID":
			return p.optStr(&ev.RequestID, false)
		case "eventID":
			return p.optStr(&ev.EventID, false)
		case "readOnly":
			return p.boolean(&ev.ReadOnly)
		case "eventType":
			return p.optStr(&ev.EventType, true)
		case "managementEvent":
			return p.boolean(&ev.ManagementEvent)
		case "recipientAccountId":
			return p.optStr(&ev.RecipientAccountID, true)
		case "eventCategory":
			return p.optStr(&ev.EventCategory, true)
		case "vpcEndpointId":
			return p.optStr(&ev.VPCEndpointID, true)
		case "tlsDetails":
			if p.isNull() {
				return nil
			}
			t := new(audit.TLSDetails)
			ev.TLSDetails = t
			var ts seen
			return p.object(func(k []byte) error {
				switch string(k) {
				case "tlsVersion":
					return first(&ts, 0, p.optStr(&t.TLSVersion, true))
				case "cipherSuite":
					return first(&ts, 1, p.optStr(&t.CipherSuite, true))
				case "clientProvidedHostHeader":
					return first(&ts, 2, p.optStr(&t.ClientProvidedHostHeader, true))
				}
				return p.unknown(k, "tlsVersion", "cipherSuite", "clientProvidedHostHeader")
			})
		case "@timestamp":
			return p.optStr(&w.Timestamp, false)
		}
	}
	return p.unknown(k, eventFields...)
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

func (p *fastParser) event() (*wireEvent, error) {
	w := new(wireEvent)
	var s seen
	err := p.object(func(k []byte) error { return p.eventMember(w, k, &s) })
	return w, err
}

// topValue decodes one top-level object: a log file, a chain record or an event.
func (p *fastParser) topValue(out []*audit.Event) ([]*audit.Event, error) {
	w := new(wireEvent)
	var records []*wireEvent
	var inner *wireEvent
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
			records = []*wireEvent{}
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
		return p.eventMember(w, k, &s)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case hasRecords:
		for _, r := range records {
			if r != nil {
				out = appendWire(out, r)
			}
		}
	case inner != nil:
		out = appendWire(out, inner)
	default:
		out = appendWire(out, w)
	}
	return out, nil
}

func (p *fastParser) userIdentity(u *audit.UserIdentity) error {
	if p.isNull() {
		return nil
	}
	fields := []string{"type", "principalId", "arn", "accountId", "accessKeyId", "userName", "identityProvider", "sessionContext"}
	var s seen
	return p.object(func(k []byte) error {
		switch string(k) {
		case "type":
			return first(&s, 0, p.optStr(&u.Type, true))
		case "principalId":
			return first(&s, 1, p.optStr(&u.PrincipalID, true))
		case "arn":
			return first(&s, 2, p.optStr(&u.ARN, true))
		case "accountId":
			return first(&s, 3, p.optStr(&u.AccountID, true))
		case "accessKeyId":
			return first(&s, 4, p.optStr(&u.AccessKeyID, true))
		case "userName":
			return first(&s, 5, p.optStr(&u.UserName, true))
		case "identityProvider":
			return first(&s, 6, p.optStr(&u.IdentityProvider, true))
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
		return p.unknown(k, fields...)
	})
}

func (p *fastParser) sessionContext(c *audit.SessionContext) error {
	fields := []string{"sessionIssuer", "attributes", "sourceIdentity", "ec2RoleDelivery"}
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
					return first(&ss, 0, p.optStr(&si.Type, true))
				case "principalId":
					return first(&ss, 1, p.optStr(&si.PrincipalID, true))
				case "arn":
					return first(&ss, 2, p.optStr(&si.ARN, true))
				case "accountId":
					return first(&ss, 3, p.optStr(&si.AccountID, true))
				case "userName":
					return first(&ss, 4, p.optStr(&si.UserName, true))
				}
				return p.unknown(k, "type", "principalId", "arn", "accountId", "userName")
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
				v, err := p.istr()
				if err != nil {
					return err
				}
				c.Attributes[string(k)] = v
				return nil
			})
		case "sourceIdentity":
			return first(&s, 2, p.optStr(&c.SourceIdentity, false))
		case "ec2RoleDelivery":
			return first(&s, 3, p.optStr(&c.EC2RoleDelivery, true))
		}
		return p.unknown(k, fields...)
	})
}

// objectMap decodes an object into a fresh map (null leaves nil).
func (p *fastParser) objectMap(dst *map[string]any) error {
	if p.isNull() {
		return nil
	}
	if p.peek() != '{' {
		return errSlow
	}
	v, err := p.value()
	if err != nil {
		return err
	}
	*dst = v.(map[string]any)
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
		a := []any{}
		p.ws()
		if p.peek() == ']' {
			p.i++
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
		for p.i < len(p.b) {
			c := p.b[p.i]
			if c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || c >= '0' && c <= '9' {
				p.i++
				continue
			}
			break
		}
		num := p.b[start:p.i]
		if !json.Valid(num) {
			return nil, errSlow
		}
		f, err := strconv.ParseFloat(string(num), 64)
		if err != nil {
			return nil, errSlow
		}
		return f, nil
	}
	return nil, errSlow
}

// skip passes over one value.
func (p *fastParser) skip() error {
	_, err := p.value()
	return err
}

// EventDecoder decodes single CloudTrail events, such as an audit record's event, with
// the fast decoder, falling back to encoding/json for what it leaves; both give the same
// event. It keeps one copy of each repeated low-cardinality string (event names, sources,
// regions) across calls, up to a bound. The zero value is ready; it is not safe for
// concurrent use.
type EventDecoder struct {
	intern map[string]string
}

// Decode parses one JSON object into an event.
func (d *EventDecoder) Decode(data []byte) (*audit.Event, error) {
	if d.intern == nil {
		d.intern = make(map[string]string, 256)
	}
	p := &fastParser{b: data, intern: d.intern}
	p.ws()
	if p.peek() == '{' {
		if w, err := p.event(); err == nil {
			if p.ws(); p.i == len(p.b) {
				return &w.Event, nil
			}
		}
	}
	var ev audit.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}
