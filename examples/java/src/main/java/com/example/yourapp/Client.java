// Calls the MyRouter gRPC bridge from Java: a unary call, a streamed call (several
// chunks per message) with metadata, the model list, and a failed call whose
// google.rpc details (ErrorInfo, RetryInfo, BadRequest) it decodes.
//
//   examples/java/build.sh      # stubs from protos/ and the classes, into gen/ (README.md)
//   MYROUTER_TOKEN=<your key> examples/java/gen/bin/client -target 127.0.0.1:50051
//
// The token comes from the environment only (MYROUTER_TOKEN), never from an
// argument, because arguments show in `ps`. The failed call asks the embedded upstream
// (`myrouter-bridge upstream`) for an HTTP 429 with Retry-After through the
// request's `extra` Struct; the real API does not know that member.
package com.example.yourapp;

import com.google.protobuf.Any;
import com.google.protobuf.Duration;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import com.myrouter.chat.v1.ChatCompletion;
import com.myrouter.chat.v1.ChatCompletionChunk;
import com.myrouter.chat.v1.ChatCompletionRequest;
import com.myrouter.chat.v1.ChatMessage;
import com.myrouter.chat.v1.ChatServiceGrpc;
import com.myrouter.chat.v1.ListModelsRequest;
import com.myrouter.chat.v1.Model;
import com.myrouter.chat.v1.StreamChatCompletionBatchesRequest;
import com.myrouter.chat.v1.StreamChatCompletionBatchesResponse;
import com.myrouter.chat.v1.Usage;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.math.BigDecimal;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

public final class Client {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);

  private final ChatServiceGrpc.ChatServiceBlockingStub stub;
  private final String model;
  private final String token;

  private Client(ManagedChannel channel, String model, String token) {
    this.stub = ChatServiceGrpc.newBlockingStub(channel);
    this.model = model;
    this.token = token;
  }

  public static void main(String[] args) throws InterruptedException {
    String target = envOr("BRIDGE_TARGET", "localhost:50051");
    String model = envOr("MYROUTER_MODEL", "myrouter/echo");
    for (int i = 0; i < args.length; i++) {
      String flag = args[i].replaceFirst("^--", "-");
      if (i + 1 < args.length && flag.equals("-target")) {
        target = args[++i];
      } else if (i + 1 < args.length && flag.equals("-model")) {
        model = args[++i];
      } else {
        System.err.println("usage: client [-target HOST:PORT] [-model ID]");
        System.exit(2);
      }
    }
    // Plaintext, as on loopback; against a TLS listener drop usePlaintext() (the
    // system's CAs) or use NettyChannelBuilder with a private CA.
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    int exit = 0;
    try {
      new Client(channel, model, System.getenv().getOrDefault("MYROUTER_TOKEN", "")).run();
    } catch (StatusRuntimeException e) {
      System.err.println(describe(e));
      exit = 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exit);
  }

  private static String envOr(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  private void run() {
    // 1. Unary: the whole completion in one answer.
    ChatCompletion completion =
        withMetadata(30, null).createChatCompletion(chatRequest("hello from java"));
    System.out.println("unary: " + completion.getChoices(0).getMessage().getContent());

    // 2. Streaming, with our own request id; print tokens as they arrive.
    stream();

    // 3. The models the API offers.
    List<String> ids = new ArrayList<>();
    for (Model m : withMetadata(30, null).listModels(ListModelsRequest.getDefaultInstance()).getDataList()) {
      ids.add(m.getId());
    }
    System.out.println("models: " + String.join(", ", ids));

    // 4. A failed call: the status code, message and google.rpc details. The
    // x-request-id of a call that fails before any message is in the trailers, which
    // the exception carries.
    Struct scenario = Struct.newBuilder()
        .putFields("kind", Value.newBuilder().setStringValue("status").build())
        .putFields("status", Value.newBuilder().setNumberValue(429).build())
        .putFields("retry_after", Value.newBuilder().setStringValue("7").build())
        .build();
    ChatCompletionRequest failing = chatRequest("hi").toBuilder()
        .setExtra(Struct.newBuilder()
            .putFields("scenario", Value.newBuilder().setStructValue(scenario).build()))
        .build();
    try {
      withMetadata(30, null).createChatCompletion(failing);
    } catch (StatusRuntimeException e) {
      System.out.println(describe(e));
      return;
    }
    throw Status.INTERNAL
        .withDescription("expected the call with an upstream 429 to fail")
        .asRuntimeException();
  }

  // Reads StreamChatCompletionBatches: each message holds, in order, the chunks that
  // arrived together (a lone chunk leaves at once, so tokens still print live), for less
  // CPU per chunk on both ends. A back-office caller that does not show tokens live may
  // set max_delay (up to 1 s), e.g. Durations.fromMillis(100), for fuller messages. A
  // bridge older than this RPC answers UNIMPLEMENTED before any message: call
  // StreamChatCompletion (one chunk per message) then.
  private void stream() {
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    Iterator<StreamChatCompletionBatchesResponse> messages =
        withMetadata(60, "java-" + randomId())
            .withInterceptors(MetadataUtils.newCaptureMetadataInterceptor(headers, trailers))
            .streamChatCompletionBatches(StreamChatCompletionBatchesRequest.newBuilder()
                .setRequest(chatRequest("stream to java"))
                .build());
    Usage usage = null;
    int chunks = 0;
    int count = 0;
    try {
      // hasNext() blocks for the next message, and throws the call's status when it failed.
      while (messages.hasNext()) {
        StreamChatCompletionBatchesResponse message = messages.next();
        if (count++ == 0) {
          System.out.print("stream x-request-id: " + headers.get().get(REQUEST_ID) + "\nstream: ");
        }
        for (ChatCompletionChunk chunk : message.getChunksList()) {
          chunks++;
          chunk.getChoicesList().forEach(c -> System.out.print(c.getDelta().getContent()));
          System.out.flush();
          if (chunk.hasUsage()) {
            usage = chunk.getUsage();
          }
        }
      }
    } finally {
      if (count > 0) {
        System.out.println();
      }
    }
    System.out.println("stream chunks: " + chunks);
    System.out.println("stream messages: " + count);
    if (usage != null) {
      System.out.printf("usage: input %d, output %d, total %d%n",
          usage.getInputTokens(), usage.getOutputTokens(), usage.getTotalTokens());
    }
  }

  // The stub for one call: its deadline, the caller's token, and a request id when given
  // (else the bridge makes one).
  private ChatServiceGrpc.ChatServiceBlockingStub withMetadata(long seconds, String requestId) {
    Metadata metadata = new Metadata();
    if (!token.isEmpty()) {
      metadata.put(AUTHORIZATION, "Bearer " + token);
    }
    if (requestId != null) {
      metadata.put(REQUEST_ID, requestId);
    }
    return stub.withDeadlineAfter(seconds, TimeUnit.SECONDS)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(metadata));
  }

  private ChatCompletionRequest chatRequest(String prompt) {
    return ChatCompletionRequest.newBuilder()
        .setModel(model)
        .addMessages(ChatMessage.newBuilder().setRole("user").setContent(prompt))
        .setMaxTokens(100)
        .build();
  }

  // A failed call as one line for the status, then one per decoded google.rpc detail
  // (from the grpc-status-details-bin trailer), then the request id from the trailers.
  static String describe(StatusRuntimeException e) {
    Status status = e.getStatus();
    List<String> lines = new ArrayList<>();
    lines.add(String.format("error: %s (%d): %s",
        status.getCode(), status.getCode().value(), Objects.toString(status.getDescription(), "")));
    com.google.rpc.Status details = StatusProto.fromThrowable(e);
    if (details != null) {
      for (Any detail : details.getDetailsList()) {
        lines.addAll(describe(detail));
      }
    }
    Metadata trailers = Status.trailersFromThrowable(e);
    String requestId = trailers == null ? null : trailers.get(REQUEST_ID);
    if (requestId != null) {
      lines.add("  x-request-id: " + requestId);
    }
    return String.join("\n", lines);
  }

  private static List<String> describe(Any detail) {
    List<String> lines = new ArrayList<>();
    try {
      if (detail.is(ErrorInfo.class)) {
        ErrorInfo info = detail.unpack(ErrorInfo.class);
        StringBuilder line = new StringBuilder(String.format(
            "  ErrorInfo: reason=%s domain=%s", info.getReason(), info.getDomain()));
        // A protobuf map has no order; print the same line every time.
        for (Map.Entry<String, String> entry : new TreeMap<>(info.getMetadataMap()).entrySet()) {
          line.append(' ').append(entry.getKey()).append('=').append(entry.getValue());
        }
        lines.add(line.toString());
      } else if (detail.is(RetryInfo.class)) {
        Duration delay = detail.unpack(RetryInfo.class).getRetryDelay();
        BigDecimal seconds = BigDecimal.valueOf(delay.getSeconds())
            .add(BigDecimal.valueOf(delay.getNanos(), 9));
        lines.add("  RetryInfo: retry after " + seconds.stripTrailingZeros().toPlainString() + " s");
      } else if (detail.is(BadRequest.class)) {
        for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
          lines.add("  BadRequest: " + v.getField() + ": " + v.getDescription());
        }
      }
    } catch (InvalidProtocolBufferException ex) {
      lines.add("  undecodable detail: " + detail.getTypeUrl() + ": " + ex.getMessage());
    }
    return lines;
  }

  private static String randomId() {
    byte[] bytes = new byte[8];
    new SecureRandom().nextBytes(bytes);
    return HexFormat.of().formatHex(bytes);
  }
}
