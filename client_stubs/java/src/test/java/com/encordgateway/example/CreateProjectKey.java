package com.encordgateway.example;

import com.encordgateway.v1.ApiKeyScope;
import com.encordgateway.v1.ApiKeyServiceGrpc;
import com.encordgateway.v1.CreateProjectApiKeyRequest;
import com.encordgateway.v1.ListProjectApiKeysRequest;
import com.encordgateway.v1.ProjectApiKey;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Mints a read-only project API key through a running encord-gateway and lists the project's keys.
 * Prints fingerprints, never the keys themselves: an API key is a credential. The create carries a
 * request_id (ENCORD_REQUEST_ID or a new UUID): sent again with the same id, from any language, it
 * returns the same key instead of minting another.
 *
 * <pre>ENCORD_GATEWAY_ADDRESS=127.0.0.1:50051 ENCORD_DEMO_PROJECT=&lt;hash&gt; mvn -q exec:java@example</pre>
 */
public final class CreateProjectKey {
  public static void main(String[] args) throws InterruptedException {
    String address = System.getenv().getOrDefault("ENCORD_GATEWAY_ADDRESS", "127.0.0.1:50051");
    String project = System.getenv().getOrDefault("ENCORD_DEMO_PROJECT", "");
    String title = System.getenv().getOrDefault("ENCORD_EXAMPLE_TITLE", "labelling vendor (java example)");
    String requestId = System.getenv().getOrDefault("ENCORD_REQUEST_ID", UUID.randomUUID().toString());
    // Plaintext, for a gateway on loopback; use TlsChannelCredentials across a network.
    ManagedChannel channel = Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
    try {
      ApiKeyServiceGrpc.ApiKeyServiceBlockingStub client = ApiKeyServiceGrpc.newBlockingStub(channel);
      String token = System.getenv("ENCORD_GATEWAY_TOKEN");
      if (token != null && !token.isEmpty()) {
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
        client = client.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
      }

      ProjectApiKey key = client.withDeadlineAfter(10, TimeUnit.SECONDS).createProjectApiKey(
          CreateProjectApiKeyRequest.newBuilder()
              .setProjectHash(project)
              .setTitle(title)
              .addScopes(ApiKeyScope.API_KEY_SCOPE_LABEL_READ)
              // Retry an UNAVAILABLE or ABORTED create with this same id: never a second key.
              .setRequestId(requestId)
              .build());
      System.out.printf("created \"%s\" %s fingerprint=%s%n", key.getTitle(), key.getScopesList(), key.getFingerprint());

      for (ProjectApiKey k : client.withDeadlineAfter(10, TimeUnit.SECONDS)
          .listProjectApiKeys(ListProjectApiKeysRequest.newBuilder().setProjectHash(project).build())
          .getApiKeysList()) {
        System.out.printf("  \"%s\" %s fingerprint=%s%n", k.getTitle(), k.getScopesList(), k.getFingerprint());
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private CreateProjectKey() {}
}
