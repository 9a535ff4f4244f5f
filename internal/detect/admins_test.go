package detect

import (
	"slices"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
)

func TestAdminUsersFromTheSpec(t *testing.T) {
	spec, err := config.Parse("admins.yaml", []byte(`version: 1
account: "123456789012"
region: us-east-1
managedPolicies:
  - name: Everything
    document: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "*", Resource: "*"}]}
  - name: InvokeOnly
    document: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "execute-api:Invoke", Resource: "*"}]}
users:
  - name: root-like
    managedPolicies: [Everything]
  - name: iam-star
    policies:
      - name: iam
        document: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: ["iam:*", "sts:*"], Resource: "*"}]}
  - name: capped
    managedPolicies: [Everything]
    permissionsBoundary: InvokeOnly
  - name: reader
    managedPolicies: [InvokeOnly]
  - name: no-policies
`))
	if err != nil {
		t.Fatal(err)
	}
	got := AdminUsers(spec)
	slices.Sort(got)
	if want := []string{"iam-star", "root-like"}; !slices.Equal(got, want) {
		t.Fatalf("AdminUsers = %v, want %v", got, want)
	}
}
