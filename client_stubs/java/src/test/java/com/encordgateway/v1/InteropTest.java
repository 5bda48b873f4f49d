package com.encordgateway.v1;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Calls every RPC of a running encord-gateway through the generated Java stubs.
 *
 * <p>client_stubs/interop.sh runs it under the repo's dev stack ({@code python -m
 * encord_gateway.devstack}), which sets ENCORD_GATEWAY_ADDRESS, ENCORD_DEMO_PROJECT and
 * ENCORD_DEMO_DATASET. Without them the tests are skipped (so a plain {@code mvn install} passes),
 * unless ENCORD_INTEROP_REQUIRED is set, where that is a failure.
 */
class InteropTest {
  private static final List<ApiKeyScope> ALL_PROJECT_SCOPES = List.of(
      ApiKeyScope.API_KEY_SCOPE_LABEL_READ, ApiKeyScope.API_KEY_SCOPE_LABEL_WRITE,
      ApiKeyScope.API_KEY_SCOPE_MODEL_INFERENCE, ApiKeyScope.API_KEY_SCOPE_MODEL_TRAIN,
      ApiKeyScope.API_KEY_SCOPE_LABEL_LOGS_READ, ApiKeyScope.API_KEY_SCOPE_ALGO_LIBRARY);

  private static ManagedChannel channel;
  private static ApiKeyServiceGrpc.ApiKeyServiceBlockingStub stub;
  private static String project;
  private static String dataset;

  @BeforeAll
  static void connect() {
    String address = System.getenv("ENCORD_GATEWAY_ADDRESS");
    project = System.getenv("ENCORD_DEMO_PROJECT");
    dataset = System.getenv("ENCORD_DEMO_DATASET");
    boolean configured = address != null && project != null && dataset != null;
    if (!configured && System.getenv("ENCORD_INTEROP_REQUIRED") != null) {
      fail("ENCORD_GATEWAY_ADDRESS, ENCORD_DEMO_PROJECT or ENCORD_DEMO_DATASET is not set");
    }
    assumeTrue(configured, "no gateway: run under `python -m encord_gateway.devstack`");

    channel = Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
    stub = ApiKeyServiceGrpc.newBlockingStub(channel);
    String token = System.getenv("ENCORD_GATEWAY_TOKEN");
    if (token != null && !token.isEmpty()) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
  }

  @AfterAll
  static void close() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static ApiKeyServiceGrpc.ApiKeyServiceBlockingStub client() {
    return stub.withDeadlineAfter(15, TimeUnit.SECONDS);
  }

  private static String fingerprint(String apiKey) throws NoSuchAlgorithmException {
    byte[] digest = MessageDigest.getInstance("SHA-256").digest(apiKey.getBytes(StandardCharsets.UTF_8));
    return java.util.HexFormat.of().formatHex(digest).substring(0, 16);
  }

  private static <E extends Enum<E>> List<E> sorted(List<E> scopes) {
    return scopes.stream().sorted().toList();
  }

  @Test
  void projectKeys() throws Exception {
    String title = "java interop " + System.nanoTime();
    List<ApiKeyScope> scopes = List.of(ApiKeyScope.API_KEY_SCOPE_LABEL_READ, ApiKeyScope.API_KEY_SCOPE_LABEL_WRITE);

    ProjectApiKey created = client().createProjectApiKey(CreateProjectApiKeyRequest.newBuilder()
        .setProjectHash(project).setTitle(title).addAllScopes(scopes).build());
    assertFalse(created.getApiKey().isEmpty(), "api_key is empty");
    assertEquals(title, created.getTitle());
    assertEquals(project, created.getProjectHash());
    assertEquals(scopes, sorted(created.getScopesList()));
    assertEquals(fingerprint(created.getApiKey()), created.getFingerprint());

    List<ProjectApiKey> keys = client()
        .listProjectApiKeys(ListProjectApiKeysRequest.newBuilder().setProjectHash(project).build())
        .getApiKeysList();
    ProjectApiKey listed = keys.stream()
        .filter(k -> k.getFingerprint().equals(created.getFingerprint()))
        .findFirst()
        .orElseThrow(() -> new AssertionError(
            "none of " + keys.size() + " listed keys has fingerprint " + created.getFingerprint()));
    assertEquals(title, listed.getTitle());
    assertEquals(project, listed.getProjectHash());
    assertEquals(scopes, sorted(listed.getScopesList()));

    GetOrCreateProjectApiKeyRequest master = GetOrCreateProjectApiKeyRequest.newBuilder().setProjectHash(project).build();
    ProjectApiKey first = client().getOrCreateProjectApiKey(master);
    ProjectApiKey second = client().getOrCreateProjectApiKey(master);
    assertFalse(first.getApiKey().isEmpty(), "master api_key is empty");
    assertEquals(first.getApiKey(), second.getApiKey(), "GetOrCreateProjectApiKey twice gave two keys");
    assertEquals(ALL_PROJECT_SCOPES, sorted(first.getScopesList()));
    assertEquals(project, first.getProjectHash());
    assertEquals(fingerprint(first.getApiKey()), first.getFingerprint());
  }

  @Test
  void datasetKeys() throws Exception {
    String title = "java interop " + System.nanoTime();
    List<DatasetScope> scopes = List.of(DatasetScope.DATASET_SCOPE_READ);

    DatasetApiKey created = client().createDatasetApiKey(CreateDatasetApiKeyRequest.newBuilder()
        .setDatasetHash(dataset).setTitle(title).addAllScopes(scopes).build());
    assertFalse(created.getApiKey().isEmpty(), "api_key is empty");
    assertFalse(created.getKeyHash().isEmpty(), "key_hash is empty");
    assertEquals(title, created.getTitle());
    assertEquals(dataset, created.getDatasetHash());
    assertEquals(scopes, sorted(created.getScopesList()));
    assertEquals(fingerprint(created.getApiKey()), created.getFingerprint());

    List<DatasetApiKey> keys = client()
        .listDatasetApiKeys(ListDatasetApiKeysRequest.newBuilder().setDatasetHash(dataset).build())
        .getApiKeysList();
    DatasetApiKey listed = keys.stream()
        .filter(k -> k.getKeyHash().equals(created.getKeyHash()))
        .findFirst()
        .orElseThrow(() -> new AssertionError(
            "none of " + keys.size() + " listed keys has key_hash " + created.getKeyHash()));
    assertEquals(title, listed.getTitle());
    assertEquals(dataset, listed.getDatasetHash());
    assertEquals(scopes, sorted(listed.getScopesList()));

    GetOrCreateDatasetApiKeyRequest master = GetOrCreateDatasetApiKeyRequest.newBuilder().setDatasetHash(dataset).build();
    DatasetApiKey first = client().getOrCreateDatasetApiKey(master);
    DatasetApiKey second = client().getOrCreateDatasetApiKey(master);
    assertFalse(first.getApiKey().isEmpty(), "master api_key is empty");
    assertEquals(first.getKeyHash(), second.getKeyHash(), "GetOrCreateDatasetApiKey twice gave two keys");
    assertEquals(first.getApiKey(), second.getApiKey());
    assertEquals(List.of(DatasetScope.DATASET_SCOPE_READ, DatasetScope.DATASET_SCOPE_WRITE), sorted(first.getScopesList()));
  }

  @Test
  void emptyProjectHashIsInvalidArgumentWithBadRequest() throws InvalidProtocolBufferException {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client().createProjectApiKey(
        CreateProjectApiKeyRequest.newBuilder()
            .setProjectHash("").setTitle("java interop").addScopes(ApiKeyScope.API_KEY_SCOPE_LABEL_READ).build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), e.getMessage());

    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    assertNotNull(status, "no google.rpc.Status in the trailers");
    List<String> fields = new ArrayList<>();
    ErrorInfo info = null;
    for (Any detail : status.getDetailsList()) {
      if (detail.is(BadRequest.class)) {
        detail.unpack(BadRequest.class).getFieldViolationsList().forEach(v -> fields.add(v.getField()));
      } else if (detail.is(ErrorInfo.class)) {
        info = detail.unpack(ErrorInfo.class);
      }
    }
    assertTrue(fields.contains("project_hash"), "BadRequest field violations: " + fields);
    assertNotNull(info, "no ErrorInfo");
    assertEquals("encord-gateway", info.getDomain());
    assertNotEquals("", info.getReason());
  }
}
