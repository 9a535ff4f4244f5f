package sigv4

import (
	"net/http"
	"strings"
)

// ClaimedAccessKey returns the access key id a request names (the Authorization header's
// Credential=, else the X-Amz-Credential query parameter) without judging anything else of
// the request, or "" when it names none in the shape of an access key id (16 to 128
// upper-case letters and digits, "IAM identifiers"). It is for the audit record of a
// refused request: anyone can name anyone's key, so it says who was claimed, never who
// called.
func ClaimedAccessKey(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if a := r.Header.Get("Authorization"); a != "" {
		if i := strings.Index(a, "Credential="); i >= 0 {
			cred = a[i+len("Credential="):]
		}
	}
	id, _, _ := strings.Cut(cred, "/")
	if len(id) < 16 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return id
}
