package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const nodeSessionARN = "arn:aws:sts::123456789012:assumed-role/app/service-a-1"

// sdkViaIMDS and sdkViaContainer load aws-sdk-go-v2's default configuration with nothing
// but the agent's address in the SDK's standard environment variables.
func sdkViaIMDS(t *testing.T, p *perimeter, a *servedAgent) aws.Config {
	t.Helper()
	sdkBaseEnv(t, p)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", a.imds+"/")
	return loadSDK(t)
}

func sdkViaContainer(t *testing.T, p *perimeter, a *servedAgent) aws.Config {
	t.Helper()
	sdkBaseEnv(t, p)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", a.container+ContainerPath)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", a.ContainerToken())
	return loadSDK(t)
}

func sdkBaseEnv(t *testing.T, p *perimeter) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CA_BUNDLE", p.caFile)
}

func loadSDK(t *testing.T) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return cfg
}

// whoami calls GetCallerIdentity with cfg against the perimeter's STS and returns the
// caller ARN and the access key the SDK signed with.
func whoami(t *testing.T, p *perimeter, cfg aws.Config) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := awssts.NewFromConfig(cfg, func(o *awssts.Options) { o.BaseEndpoint = aws.String(p.srv.URL) }).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Arn), c.AccessKeyID
}

type botoCall struct{ ARN, Key string }

// boto runs testdata/whoami.py: calls GetCallerIdentity calls times, pause seconds apart,
// in one process. It returns a function that waits for it and returns its calls.
func boto(t *testing.T, python string, env []string, calls int, pause time.Duration) func() []botoCall {
	t.Helper()
	cmd := exec.Command(python, "testdata/whoami.py", strconv.Itoa(calls), strconv.FormatFloat(pause.Seconds(), 'f', 3, 64))
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() []botoCall {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("whoami.py: %v\n%s", err, stderr.String())
		}
		var out []botoCall
		sc := bufio.NewScanner(&stdout)
		for sc.Scan() {
			var c struct{ Arn, Key string }
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				t.Fatalf("whoami.py output %q: %v", sc.Text(), err)
			}
			out = append(out, botoCall{c.Arn, c.Key})
		}
		if len(out) != calls {
			t.Fatalf("whoami.py made %d calls, want %d\n%s", len(out), calls, stderr.String())
		}
		return out
	}
}

// TestSDKs: botocore and aws-sdk-go-v2, given only the agent's address, get credentials
// through IMDSv2 and through the container endpoint and call STS as the node's role
// session.
func TestSDKs(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", nil)
	if arn, _ := whoami(t, p, sdkViaIMDS(t, p, a)); arn != nodeSessionARN {
		t.Fatalf("aws-sdk-go-v2 via IMDS: %s", arn)
	}
	if arn, _ := whoami(t, p, sdkViaContainer(t, p, a)); arn != nodeSessionARN {
		t.Fatalf("aws-sdk-go-v2 via the container endpoint: %s", arn)
	}
	python := needPython(t)
	viaIMDS := boto(t, python, sdkEnv(p, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+a.imds+"/"), 1, 0)()
	viaContainer := boto(t, python, sdkEnv(p, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+a.container+ContainerPath, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+a.ContainerToken()), 1, 0)()
	if viaIMDS[0].ARN != nodeSessionARN || viaContainer[0].ARN != nodeSessionARN {
		t.Fatalf("botocore: via IMDS %+v, via the container endpoint %+v", viaIMDS, viaContainer)
	}
}

// TestRefreshAcrossExpiryAndOutage runs 20-second sessions:
//  1. aws-sdk-go-v2 (IMDS and container) and botocore (container) in long-lived processes
//     keep working after the first credentials' expiry, with new keys: the agent
//     refreshed them;
//  2. STS goes down: the agent keeps serving the current credentials, never others,
//     until they near expiry, then answers 503 on both protocols, never expired ones;
//  3. STS comes back: the agent serves new credentials within its retry bound.
//
// botocore through IMDS is checked for a first fetch only (TestSDKs): botocore's IMDS
// provider extends credentials that expire within 17 to 25 minutes (its "static
// stability" for EC2) and does not fetch again before that, so sessions shorter than
// about 25 minutes cannot be refreshed in process through IMDS by botocore.
func TestRefreshAcrossExpiryAndOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for 20-second sessions to expire")
	}
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", func(c *Config) { c.SessionDuration = 20 * time.Second })
	first, _ := a.Credentials()
	imdsCfg := sdkViaIMDS(t, p, a)
	_, k1 := whoami(t, p, imdsCfg)
	contCfg := sdkViaContainer(t, p, a)
	_, k2 := whoami(t, p, contCfg)
	if k1 != first.AccessKeyID || k2 != first.AccessKeyID {
		t.Fatal("the SDKs did not get the agent's credentials")
	}
	python := needPython(t)
	wait := boto(t, python, sdkEnv(p, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+a.container+ContainerPath, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+a.ContainerToken()),
		2, time.Until(first.Expiration)+2*time.Second)

	// 1. Past the first credentials' expiry.
	time.Sleep(time.Until(first.Expiration) + 1500*time.Millisecond)
	second, ok := a.Credentials()
	if !ok || second.AccessKeyID == first.AccessKeyID {
		t.Fatal("the agent did not refresh before the first credentials expired")
	}
	// About 2/3 of the 20 s lifetime: never much earlier (that would hammer STS), and
	// reported against 15 s but failed only when the refresh came after the first
	// credentials expired (a loaded machine may fire the timer late).
	refreshedIn := second.LastUpdated.Sub(first.LastUpdated)
	if refreshedIn < 11*time.Second {
		t.Errorf("refreshed %s after the first credentials; want about 2/3 of 20s, not earlier than 11s", refreshedIn)
	}
	testenv.Latency(t, "the refresh of 20-second credentials", refreshedIn, 15*time.Second, first.Expiration.Sub(first.LastUpdated))
	for name, cfg := range map[string]aws.Config{"IMDS": imdsCfg, "container": contCfg} {
		arn, key := whoami(t, p, cfg)
		if arn != nodeSessionARN || key == first.AccessKeyID {
			t.Fatalf("aws-sdk-go-v2 via %s after expiry: %s with the first key: %v", name, arn, key == first.AccessKeyID)
		}
	}
	calls := wait()
	if calls[0].ARN != nodeSessionARN || calls[1].ARN != nodeSessionARN || calls[0].Key == calls[1].Key {
		t.Fatalf("botocore across the expiry: %+v", calls)
	}

	// 2. STS down.
	p.down.Store(true)
	cur, _ := a.Credentials()
	tok := imdsToken(t, a, "60")
	deadline := cur.Expiration.Add(-500 * time.Millisecond)
	served, unserved := 0, 0
	for time.Now().Before(deadline) {
		code, _, body := req(t, "GET", a.imds+"/latest/meta-data/iam/security-credentials/app", "X-aws-ec2-metadata-token", tok)
		ccode, _, _ := req(t, "GET", a.container+ContainerPath, "Authorization", a.ContainerToken())
		now := time.Now()
		switch code {
		case 200:
			var doc struct{ AccessKeyId, Expiration string }
			_ = json.Unmarshal([]byte(body), &doc)
			exp, _ := time.Parse(time.RFC3339, doc.Expiration)
			if doc.AccessKeyId != cur.AccessKeyID || !exp.After(now) {
				t.Fatalf("during the outage IMDS served %s expiring %s (now %s)", doc.AccessKeyId, doc.Expiration, now.UTC().Format(time.RFC3339))
			}
			served++
		case 503:
			if ccode != 503 {
				t.Fatalf("IMDS 503 but the container endpoint %d", ccode)
			}
			unserved++
		default:
			t.Fatalf("IMDS during the outage: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if served == 0 || unserved == 0 {
		t.Fatalf("during the outage: %d answers with the current credentials, %d 503s; want both", served, unserved)
	}
	time.Sleep(time.Until(cur.Expiration) + 200*time.Millisecond)
	if code, _, _ := req(t, "GET", a.imds+"/latest/meta-data/iam/security-credentials/app", "X-aws-ec2-metadata-token", tok); code != 503 {
		t.Fatalf("IMDS after expiry with STS down: %d", code)
	}
	if _, ok := a.Credentials(); ok {
		t.Fatal("expired credentials offered")
	}

	// 3. STS back.
	back := time.Now()
	p.down.Store(false)
	for {
		if c, ok := a.Credentials(); ok && c.AccessKeyID != cur.AccessKeyID {
			testenv.Latency(t, "new credentials after STS came back", time.Since(back), maxRetryUnserved+2*time.Second, maxRetryUnserved+10*time.Second)
			break
		}
		if time.Since(back) > maxRetryUnserved+10*time.Second {
			t.Fatal("no new credentials after STS came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if arn, _ := whoami(t, p, contCfg); arn != nodeSessionARN {
		t.Fatalf("after the outage: %s", arn)
	}
}
