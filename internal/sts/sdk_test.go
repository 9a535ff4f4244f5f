package sts

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sdkClient is aws-sdk-go-v2's STS client pointed at the test server.
func (e *env) sdkClient(creds aws.Credentials) *awssts.Client {
	return awssts.New(awssts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.srv.URL),
		HTTPClient:   e.srv.Client(),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		}),
		RetryMaxAttempts: 1,
	})
}

func apiCode(t *testing.T, err error) (string, string, int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), ae.ErrorMessage(), status
}

// TestSDKGoV2 drives the server with aws-sdk-go-v2's STS client (query protocol).
func TestSDKGoV2(t *testing.T) {
	e := newEnv(t)
	e.serve(t)
	ctx := context.Background()
	alice := e.sdkClient(e.users["alice"])

	id, err := alice.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Arn) != "arn:aws:iam::123456789012:user/alice" || aws.ToString(id.Account) != testAccount {
		t.Fatalf("identity %+v", id)
	}

	ar, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn:           aws.String(appARN),
		RoleSessionName:   aws.String("sdk"),
		DurationSeconds:   aws.Int32(1800),
		Tags:              []ststypes.Tag{{Key: aws.String("team"), Value: aws.String("payments")}},
		TransitiveTagKeys: []string{"team"},
		SourceIdentity:    aws.String("alice"),
		PolicyArns:        []ststypes.PolicyDescriptorType{{Arn: aws.String("arn:aws:iam::123456789012:policy/ReadOnly")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(ar.AssumedRoleUser.Arn) != "arn:aws:sts::123456789012:assumed-role/app/sdk" || aws.ToString(ar.SourceIdentity) != "alice" || aws.ToInt32(ar.PackedPolicySize) <= 0 {
		t.Fatalf("assume role %+v %+v", ar.AssumedRoleUser, ar)
	}
	if d := time.Until(aws.ToTime(ar.Credentials.Expiration)); d < 1790*time.Second || d > 1800*time.Second {
		t.Fatalf("expiration in %s", d)
	}
	roleCreds := aws.Credentials{AccessKeyID: aws.ToString(ar.Credentials.AccessKeyId), SecretAccessKey: aws.ToString(ar.Credentials.SecretAccessKey), SessionToken: aws.ToString(ar.Credentials.SessionToken)}
	asRole := e.sdkClient(roleCreds)
	id, err = asRole.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Arn) != aws.ToString(ar.AssumedRoleUser.Arn) || aws.ToString(id.UserId) != aws.ToString(ar.AssumedRoleUser.AssumedRoleId) {
		t.Fatalf("identity as the role %+v", id)
	}

	st, err := alice.GetSessionToken(ctx, &awssts.GetSessionTokenInput{DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatal(err)
	}
	id, err = e.sdkClient(aws.Credentials{AccessKeyID: *st.Credentials.AccessKeyId, SecretAccessKey: *st.Credentials.SecretAccessKey, SessionToken: *st.Credentials.SessionToken}).
		GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Arn) != "arn:aws:iam::123456789012:user/alice" {
		t.Fatalf("identity with session token %v %v", id, err)
	}

	denials := []struct {
		name       string
		call       func() error
		wantCode   string
		wantStatus int
	}{
		{"untrusted principal", func() error {
			_, err := e.sdkClient(e.users["bob"]).AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(appARN), RoleSessionName: aws.String("bob")})
			return err
		}, "AccessDenied", http.StatusForbidden},
		{"wrong ExternalId", func() error {
			_, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(partnerARN), RoleSessionName: aws.String("pp"), ExternalId: aws.String("wrong-id")})
			return err
		}, "AccessDenied", http.StatusForbidden},
		{"duration over the role's max", func() error {
			_, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(appARN), RoleSessionName: aws.String("pp"), DurationSeconds: aws.Int32(3700)})
			return err
		}, "ValidationError", http.StatusBadRequest},
		{"bad session name", func() error {
			_, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(appARN), RoleSessionName: aws.String("a b")})
			return err
		}, "ValidationError", http.StatusBadRequest},
		{"malformed session policy", func() error {
			_, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(appARN), RoleSessionName: aws.String("pp"), Policy: aws.String(`{"Statement":"x"}`)})
			return err
		}, "MalformedPolicyDocument", http.StatusBadRequest},
		{"unknown key", func() error {
			_, err := e.sdkClient(aws.Credentials{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: "x"}).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
			return err
		}, "InvalidClientTokenId", http.StatusForbidden},
		{"tampered session token", func() error {
			c := roleCreds
			c.SessionToken = strings.ToUpper(c.SessionToken[:8]) + c.SessionToken[8:] + "x"
			_, err := e.sdkClient(c).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
			return err
		}, "InvalidClientTokenId", http.StatusForbidden},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			err := d.call()
			if err == nil {
				t.Fatal("call succeeded")
			}
			code, msg, status := apiCode(t, err)
			if code != d.wantCode || status != d.wantStatus || msg == "" {
				t.Fatalf("got %s %d %q; want %s %d", code, status, msg, d.wantCode, d.wantStatus)
			}
		})
	}
}
