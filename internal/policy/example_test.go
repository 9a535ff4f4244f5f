package policy_test

import (
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

// A role's identity policy, capped by a permissions boundary, deciding a gateway call.
func ExampleSet_Evaluate() {
	identity, err := policy.Parse([]byte(`{
	  "Version": "2012-10-17",
	  "Statement": [
	    {"Sid": "InvokeOrders", "Effect": "Allow", "Action": "execute-api:Invoke",
	     "Resource": "arn:aws:execute-api:us-east-1:111122223333:a1b2c3/prod/*/orders/*",
	     "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}},
	    {"Sid": "NoDeletes", "Effect": "Deny", "Action": "execute-api:Invoke",
	     "Resource": "arn:aws:execute-api:us-east-1:111122223333:a1b2c3/*/DELETE/*"}
	  ]}`))
	if err != nil {
		panic(err)
	}
	boundary, err := policy.Parse([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"execute-api:*","Resource":"*"}}`))
	if err != nil {
		panic(err)
	}
	set := policy.NewSet(policy.Entry{Kind: policy.Identity, Policy: identity}, policy.Entry{Kind: policy.Boundary, Policy: boundary})

	ctx := policy.NewContext(map[string][]string{"aws:SourceIp": {"10.1.2.3"}})
	for _, method := range []string{"GET", "DELETE"} {
		d := set.Evaluate(&policy.Request{
			Principal: "arn:aws:sts::111122223333:assumed-role/OrdersClient/i-0abc",
			Action:    "execute-api:Invoke",
			Resource:  "arn:aws:execute-api:us-east-1:111122223333:a1b2c3/prod/" + method + "/orders/42",
			Context:   ctx,
		})
		fmt.Println(method, d.Effect, d.Matched)
	}
	// Output:
	// GET Allow [{0 InvokeOrders} {1 0}]
	// DELETE ExplicitDeny [{0 NoDeletes}]
}
