// Command go is the aws-sdk-go-v2 client example: STS through the phantom-demo profile of
// the AWS config phantom up writes (its credentials are sessions of the Service-A role,
// from credential_process; the profile trusts the perimeter CA and names Phantom's STS),
// then a POST to the orders API signed for execute-api.
//
//	source phantom-data/demo.env && go run ./examples/clients/go
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx := context.Background()
	// The config file is named in the environment rather than with
	// config.WithSharedConfigFiles: credential_process (phantom credentials) reads it too,
	// for the profile holding the key that signs its AssumeRole.
	if os.Getenv("AWS_CONFIG_FILE") == "" {
		os.Setenv("AWS_CONFIG_FILE", os.Getenv("PHANTOM_AWS_CONFIG"))
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigProfile("phantom-demo"))
	if err != nil {
		log.Fatal(err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("caller:", aws.ToString(id.Arn))

	// An API call is an ordinary HTTP request, signed for execute-api over the SHA-256 of
	// its body.
	body := []byte(`{"item": "book"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv("PHANTOM_API_URL"), bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		log.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "execute-api", cfg.Region, time.Now()); err != nil {
		log.Fatal(err)
	}
	resp, err := cfg.HTTPClient.Do(req) // trusts the profile's ca_bundle
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode, string(out))
	if resp.StatusCode != http.StatusCreated {
		os.Exit(1)
	}
}
