// Command example mints a read-only project API key through a running
// encord-gateway and lists the project's keys.
//
//	ENCORD_GATEWAY_ADDRESS=127.0.0.1:50051 go run ./example -project <project-hash>
//
// The create carries a request_id (a UUID, ENCORD_REQUEST_ID or a new one):
// sent again with the same id, from any language, it returns the same key.
//
// It prints key fingerprints, never the keys themselves: an API key is a
// credential.
package main

import (
	"context"
	"crypto/rand"
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
	title := flag.String("title", envOr("ENCORD_EXAMPLE_TITLE", "labelling vendor (go example)"), "key title")
	requestID := flag.String("request-id", envOr("ENCORD_REQUEST_ID", newUUID()), "makes the create safe to retry")
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
		Title:       *title,
		Scopes:      []v1.ApiKeyScope{v1.ApiKeyScope_API_KEY_SCOPE_LABEL_READ},
		// Retry a create that ended UNAVAILABLE or ABORTED with this same id: never a second key.
		RequestId: *requestID,
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

// newUUID is a random (version 4) UUID in its canonical form.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		log.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
