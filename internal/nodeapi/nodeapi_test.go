package nodeapi

import (
	"encoding/json"
	"testing"
)

// The member names are the wire contract between STS and agents already deployed: a
// rename here would break every agent of an older release, so the encodings are fixed.
func TestWireNames(t *testing.T) {
	d := int64(900)
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"credentials (container-credentials names)", Credentials{AccessKeyID: "ASIA", SecretAccessKey: "s", Token: "t", Expiration: "e", RoleArn: "r", AccountID: "a", ProxyPassword: "p", Node: "n", Region: "g", VPC: "v", PrivateIP: "i", Endpoint: "vpce"},
			`{"AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"e","RoleArn":"r","AccountId":"a","ProxyPassword":"p","Node":"n","Region":"g","Vpc":"v","PrivateIp":"i","Endpoint":"vpce"}`},
		{"credentials without a network place", Credentials{},
			`{"AccessKeyId":"","SecretAccessKey":"","Token":"","Expiration":"","RoleArn":"","AccountId":"","ProxyPassword":"","Node":"","Region":""}`},
		{"certificate", Certificate{"c", "ca", "n", "e"}, `{"certificate":"c","ca":"ca","node":"n","expiration":"e"}`},
		{"enroll request", Request{Token: "t", CSR: "c"}, `{"token":"t","csr":"c"}`},
		{"credentials request", Request{DurationSeconds: &d}, `{"durationSeconds":900}`},
		{"watch request", Request{AccessKeyID: "a", SessionToken: "s"}, `{"accessKeyId":"a","sessionToken":"s"}`},
		{"heartbeat", WatchEvent{Event: EventHeartbeat}, `{"event":"heartbeat"}`},
		{"refresh", WatchEvent{Event: EventRefresh, Reason: "SessionRevoked"}, `{"event":"refresh","reason":"SessionRevoked"}`},
		{"error", Error{"AccessDenied", "no"}, `{"__type":"AccessDenied","message":"no"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}
