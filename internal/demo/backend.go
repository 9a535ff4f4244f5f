package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AssertionHeader carries the gateway's signed statement of who is calling.
const AssertionHeader = "X-Phantom-Identity"

// Caller is what the backend learned from a verified assertion.
type Caller struct {
	Principal string `json:"principal,omitempty"`
	Endpoint  string `json:"vpce,omitempty"`
	SourceIP  string `json:"sourceIp,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// Backend is the demo orders service. It trusts nothing about the caller but the
// gateway's assertion, which Verify checks (signature, audience, expiry, that it names
// this request, that it was not used before, and, as the body is read, the body's hash);
// a request without a valid one is refused, so the service cannot be reached around the
// gateway, nor with an assertion captured on the way.
type Backend struct {
	// Verify checks the request's assertion (gateway.AssertionVerifier.VerifyRequest) and
	// returns who it names.
	Verify func(r *http.Request) (Caller, error)
	// Now stamps new orders; time.Now when nil.
	Now func() time.Time

	mu     sync.Mutex
	orders []order
}

type order struct {
	ID        string          `json:"id"`
	Item      json.RawMessage `json:"item"`
	CreatedBy string          `json:"createdBy"`
	CreatedAt time.Time       `json:"createdAt"`
}

// ServeHTTP answers the demo routes: GET /health, GET|POST /orders, GET /orders/{id},
// GET /reports, and anything under /admin/.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
		return
	}
	caller, err := b.Verify(r)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "no valid gateway assertion: " + err.Error()})
		return
	}
	switch {
	case r.URL.Path == "/orders" && r.Method == http.MethodGet:
		b.mu.Lock()
		list := append([]order{}, b.orders...)
		b.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"orders": list, "caller": caller})
	case r.URL.Path == "/orders" && r.Method == http.MethodPost:
		// Read to the end through r.Body: the verifier checks the body against the hash
		// the client signed when it reaches its end (a reader that stops short of the
		// end would skip the check; MaxBytesReader fails instead).
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"message": "the body is over 64 KiB"})
			return
		case err != nil:
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "no valid gateway assertion: " + err.Error()})
			return
		case !json.Valid(body):
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "the body must be a JSON document"})
			return
		}
		now := time.Now
		if b.Now != nil {
			now = b.Now
		}
		b.mu.Lock()
		o := order{ID: strconv.Itoa(len(b.orders) + 1), Item: body, CreatedBy: caller.Principal, CreatedAt: now().UTC()}
		b.orders = append(b.orders, o)
		b.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"order": o, "caller": caller})
	case strings.HasPrefix(r.URL.Path, "/orders/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, o := range b.orders {
			if o.ID == id {
				writeJSON(w, http.StatusOK, map[string]any{"order": o, "caller": caller})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"message": fmt.Sprintf("no order %q", id), "caller": caller})
	case r.URL.Path == "/reports" && r.Method == http.MethodGet:
		b.mu.Lock()
		n := len(b.orders)
		b.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"report": map[string]any{"orders": n}, "caller": caller})
	case strings.HasPrefix(r.URL.Path, "/admin/"):
		writeJSON(w, http.StatusOK, map[string]any{"admin": r.URL.Path, "caller": caller})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "no such route"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
