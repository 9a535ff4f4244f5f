package audit

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/jsonstr"
)

// eventWriter spells an Event as encoding/json does — the same members, order, omissions,
// escaping and map key order; TestEventJSON and FuzzEventJSON hold the two together —
// without reflection: the gateway records one event per request. Values of the event's
// maps it does not spell itself (floats, structs, anything but strings, booleans,
// integers, maps and slices of those) make it give up, and Record falls back on
// encoding/json, so any event still encodes.
type eventWriter struct {
	b    []byte
	anys []anyMember // members of the maps being written (see anyMember)
	strs []strMember
	ok   bool
}

// appendEvent appends ev's JSON to b; ok false means ev holds a value the writer does not
// spell (b is then to be discarded).
func appendEvent(w *eventWriter, b []byte, ev *Event) ([]byte, bool) {
	w.b, w.ok = b, true
	w.event(ev)
	b = w.b
	w.b = nil
	clear(w.anys) // a writer given up part way leaves members on the stacks
	clear(w.strs)
	w.anys, w.strs = w.anys[:0], w.strs[:0]
	return b, w.ok
}

func (w *eventWriter) str(s string) { w.b = jsonstr.Append(w.b, s) }

// member writes ,"name": (first: without the comma); tag is "name": spelled out, a
// constant at every call, so that it takes one append.
func (w *eventWriter) member(tag string, first bool) {
	if !first {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, tag...)
}

func (w *eventWriter) strMember(tag, v string, first bool) {
	w.member(tag, first)
	w.str(v)
}

// optStr writes a string member with omitempty; it returns whether it wrote one.
func (w *eventWriter) optStr(tag, v string, first bool) bool {
	if v == "" {
		return false
	}
	w.strMember(tag, v, first)
	return true
}

func (w *eventWriter) boolean(v bool) { w.b = strconv.AppendBool(w.b, v) }

func (w *eventWriter) event(ev *Event) {
	w.b = append(w.b, '{')
	w.strMember(`"eventVersion":`, ev.EventVersion, true)
	w.member(`"userIdentity":`, false)
	w.userIdentity(&ev.UserIdentity)
	w.member(`"eventTime":`, false)
	w.time(ev.EventTime)
	w.strMember(`"eventSource":`, ev.EventSource, false)
	w.strMember(`"eventName":`, ev.EventName, false)
	w.strMember(`"awsRegion":`, ev.AWSRegion, false)
	w.strMember(`"sourceIPAddress":`, ev.SourceIPAddress, false)
	w.strMember(`"userAgent":`, ev.UserAgent, false)
	w.optStr(`"errorCode":`, ev.ErrorCode, false)
	w.optStr(`"errorMessage":`, ev.ErrorMessage, false)
	w.member(`"requestParameters":`, false)
	w.mapAny(ev.RequestParameters)
	w.member(`"responseElements":`, false)
	w.mapAny(ev.ResponseElements)
	if len(ev.AdditionalEventData) > 0 {
		w.member(`"additionalEventData":`, false)
		w.mapAny(ev.AdditionalEventData)
	}
	w.strMember(`"requestID":`, ev.RequestID, false)
	w.strMember(`"eventID":`, ev.EventID, false)
	w.member(`"readOnly":`, false)
	w.boolean(ev.ReadOnly)
	w.strMember(`"eventType":`, ev.EventType, false)
	w.member(`"managementEvent":`, false)
	w.boolean(ev.ManagementEvent)
	w.strMember(`"recipientAccountId":`, ev.RecipientAccountID, false)
	w.strMember(`"eventCategory":`, ev.EventCategory, false)
	w.optStr(`"vpcEndpointId":`, ev.VPCEndpointID, false)
	if t := ev.TLSDetails; t != nil {
		w.member(`"tlsDetails":`, false)
		w.b = append(w.b, '{')
		w.strMember(`"tlsVersion":`, t.TLSVersion, true)
		w.strMember(`"cipherSuite":`, t.CipherSuite, false)
		w.strMember(`"clientProvidedHostHeader":`, t.ClientProvidedHostHeader, false)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, '}')
}

func (w *eventWriter) userIdentity(u *UserIdentity) {
	w.b = append(w.b, '{')
	first := true
	for _, m := range [...]struct{ tag, v string }{
		{`"type":`, u.Type}, {`"principalId":`, u.PrincipalID}, {`"arn":`, u.ARN}, {`"accountId":`, u.AccountID},
		{`"accessKeyId":`, u.AccessKeyID}, {`"userName":`, u.UserName}, {`"identityProvider":`, u.IdentityProvider},
	} {
		if w.optStr(m.tag, m.v, first) {
			first = false
		}
	}
	if s := u.SessionContext; s != nil {
		w.member(`"sessionContext":`, first)
		w.b = append(w.b, '{')
		first := true
		if i := s.SessionIssuer; i != nil {
			w.member(`"sessionIssuer":`, true)
			w.b = append(w.b, '{')
			w.strMember(`"type":`, i.Type, true)
			w.strMember(`"principalId":`, i.PrincipalID, false)
			w.strMember(`"arn":`, i.ARN, false)
			w.strMember(`"accountId":`, i.AccountID, false)
			w.strMember(`"userName":`, i.UserName, false)
			w.b = append(w.b, '}')
			first = false
		}
		w.member(`"attributes":`, first)
		w.mapString(s.Attributes)
		w.optStr(`"sourceIdentity":`, s.SourceIdentity, false)
		w.optStr(`"ec2RoleDelivery":`, s.EC2RoleDelivery, false)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, '}')
}

// time writes t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds) for a UTC time
// in years 0-9999; any other gives up (MarshalJSON has rules of its own for offsets).
func (w *eventWriter) time(t time.Time) {
	if t.Location() != time.UTC || t.Before(minTime) || !t.Before(maxTime) {
		w.ok = false
		return
	}
	w.b = append(w.b, '"')
	w.b = t.AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

// minTime and maxTime bound the times time writes: years 0-9999 (compared rather than
// computing t's year).
var (
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// The members of the maps being written, sorted as encoding/json sorts them (by key:
// keys are unique): stacks shared by nested maps. Each member is read once, in the
// iteration that collects it, rather than looked up again by its key.
type (
	anyMember struct {
		k string
		v any
	}
	strMember struct{ k, v string }
)

func byKeyAny(a, b anyMember) int { return strings.Compare(a.k, b.k) }
func byKeyStr(a, b strMember) int { return strings.Compare(a.k, b.k) }

func (w *eventWriter) mapString(m map[string]string) {
	if m == nil {
		w.b = append(w.b, "null"...)
		return
	}
	from := len(w.strs)
	for k, v := range m {
		w.strs = append(w.strs, strMember{k, v})
	}
	slices.SortFunc(w.strs[from:], byKeyStr)
	w.b = append(w.b, '{')
	for i, kv := range w.strs[from:] {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(kv.k)
		w.b = append(w.b, ':')
		w.str(kv.v)
	}
	w.b = append(w.b, '}')
	clear(w.strs[from:])
	w.strs = w.strs[:from]
}

func (w *eventWriter) mapAny(m map[string]any) {
	if m == nil {
		w.b = append(w.b, "null"...)
		return
	}
	from := len(w.anys)
	for k, v := range m {
		w.anys = append(w.anys, anyMember{k, v})
	}
	slices.SortFunc(w.anys[from:], byKeyAny)
	w.b = append(w.b, '{')
	// Indexed, not ranged over a slice of w.anys: a nested map's members may move
	// the stack.
	for i := from; i < from+len(m) && w.ok; i++ {
		if i > from {
			w.b = append(w.b, ',')
		}
		w.str(w.anys[i].k)
		w.b = append(w.b, ':')
		w.value(w.anys[i].v)
	}
	w.b = append(w.b, '}')
	clear(w.anys[from:])
	w.anys = w.anys[:from]
}

func (w *eventWriter) value(v any) {
	switch v := v.(type) {
	case nil:
		w.b = append(w.b, "null"...)
	case string:
		w.str(v)
	case bool:
		w.boolean(v)
	case int:
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	case int64:
		w.b = strconv.AppendInt(w.b, v, 10)
	case int32:
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	case uint64:
		w.b = strconv.AppendUint(w.b, v, 10)
	case uint32:
		w.b = strconv.AppendUint(w.b, uint64(v), 10)
	case map[string]any:
		w.mapAny(v)
	case map[string]string:
		w.mapString(v)
	case []string:
		if v == nil {
			w.b = append(w.b, "null"...)
			return
		}
		w.b = append(w.b, '[')
		for i, s := range v {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.str(s)
		}
		w.b = append(w.b, ']')
	case []any:
		if v == nil {
			w.b = append(w.b, "null"...)
			return
		}
		w.b = append(w.b, '[')
		for i, e := range v {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.value(e)
		}
		w.b = append(w.b, ']')
	default:
		w.ok = false
	}
}
