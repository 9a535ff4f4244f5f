package proctest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

var emptyHash = hex.EncodeToString(sha256.New().Sum(nil))

// Reply is the answer to one call: the status and x-amzn-RequestId, or the transport
// error when no answer came.
type Reply struct {
	Status    int
	RequestID string
	ErrorType string // x-amzn-ErrorType
	Err       error
}

// Call sends one SigV4-signed GET of the orders API through endpoint i.
func (c *Cluster) Call(ctx context.Context, i int, creds aws.Credentials) Reply {
	client, err := c.Client()
	if err != nil {
		return Reply{Err: err}
	}
	return Get(ctx, client, c.EndpointURL(i), creds)
}

// Get sends one GET to url signed with creds for execute-api in the cluster's region.
func Get(ctx context.Context, client *http.Client, url string, creds aws.Credentials) Reply {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Reply{Err: err}
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, r, emptyHash, "execute-api", Region, time.Now()); err != nil {
		return Reply{Err: err}
	}
	resp, err := client.Do(r)
	if err != nil {
		return Reply{Err: err}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return Reply{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-Requestid"), ErrorType: resp.Header.Get("X-Amzn-Errortype")}
}

// CallerIdentity asks the cluster's STS who creds belong to (GetCallerIdentity).
func (c *Cluster) CallerIdentity(ctx context.Context, creds aws.Credentials) error {
	return c.callerIdentityAt(ctx, c.STSURL(), creds)
}

// callerIdentityAt is CallerIdentity asked of the STS at url.
func (c *Cluster) callerIdentityAt(ctx context.Context, url string, creds aws.Credentials) error {
	cl, err := c.stsClientAt(url, creds)
	if err != nil {
		return err
	}
	_, err = cl.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}

func (c *Cluster) stsClientAt(url string, creds aws.Credentials) (*sts.Client, error) {
	client, err := c.Client()
	if err != nil {
		return nil, err
	}
	return sts.New(sts.Options{
		Region:       Region,
		BaseEndpoint: aws.String(url),
		Credentials:  aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		HTTPClient:   client,
	}), nil
}

// AssumeRole gets a session of the cluster's role with creds, from the cluster's STS,
// through aws-sdk-go-v2's STS client.
func (c *Cluster) AssumeRole(ctx context.Context, creds aws.Credentials, session string) (aws.Credentials, error) {
	return c.AssumeRoleAt(ctx, 0, creds, session)
}

// AssumeRoleAt is AssumeRole through STS replica i (0: the first, 1: sts-2, …).
func (c *Cluster) AssumeRoleAt(ctx context.Context, i int, creds aws.Credentials, session string) (aws.Credentials, error) {
	return c.AssumeRoleWithPolicyAt(ctx, i, creds, session, "")
}

// AssumeRoleWithPolicyAt is AssumeRoleAt with a session policy ("": none).
func (c *Cluster) AssumeRoleWithPolicyAt(ctx context.Context, i int, creds aws.Credentials, session, policy string) (aws.Credentials, error) {
	url := c.STSURL()
	if i > 0 {
		url = "https://" + c.moreSTSAddrs[i-1]
	}
	cl, err := c.stsClientAt(url, creds)
	if err != nil {
		return aws.Credentials{}, err
	}
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + Account + ":role/" + Role),
		RoleSessionName: aws.String(session),
	}
	if policy != "" {
		in.Policy = aws.String(policy)
	}
	out, err := cl.AssumeRole(ctx, in)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("assume role: %w", err)
	}
	k := out.Credentials
	return aws.Credentials{AccessKeyID: *k.AccessKeyId, SecretAccessKey: *k.SecretAccessKey, SessionToken: *k.SessionToken, CanExpire: true, Expires: *k.Expiration}, nil
}
