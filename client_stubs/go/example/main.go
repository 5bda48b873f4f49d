// Command example mints a read-only project API key through a running
// encord-gateway and lists the project's keys.
//
//	ENCORD_GATEWAY_ADDRESS=127.0.0.1:50051 go run ./example -project <project-hash>
//
// It prints key fingerprints, never the keys themselves: an API key is a
// credential.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	v1 "github.com/encord-gateway/encord-gateway/client_stubs/go/encordgatewayv1"
)

func main() {
	address := flag.String("address", envOr("ENCORD_GATEWAY_ADDRESS", "127.0.0.1:50051"), "gateway host:port")
	project := flag.String("project", os.Getenv("ENCORD_DEMO_PROJECT"), "project hash")
	flag.Parse()

	// Plaintext, for a gateway on loopback; use credentials.NewTLS across a network.
	conn, err := grpc.NewClient(*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := v1.NewApiKeyServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token := os.Getenv("ENCORD_GATEWAY_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	key, err := client.CreateProjectApiKey(ctx, &v1.CreateProjectApiKeyRequest{
		ProjectHash: *project,
		Title:       "labelling vendor (go example)",
		Scopes:      []v1.ApiKeyScope{v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ},
	})
	if err != nil {
		log.Fatalf("create: %v", err) // a *status.Status error: status.Code(err), status.Convert(err).Details()
	}
	fmt.Printf("created %q %v fingerprint=%s\n", key.GetTitle(), key.GetScopes(), key.GetFingerprint())

	list, err := client.ListProjectApiKeys(ctx, &v1.ListProjectApiKeysRequest{ProjectHash: *project})
	if err != nil {
		log.Fatalf("list: %v", err)
	}
	for _, k := range list.GetApiKeys() {
		fmt.Printf("  %-40q %v fingerprint=%s\n", k.GetTitle(), k.GetScopes(), k.GetFingerprint())
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
