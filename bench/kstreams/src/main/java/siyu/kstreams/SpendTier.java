package siyu.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayDeque;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The spend-tier rule of docs/rules.md on one customer's orders: net spend in integer fen (paid
 * purchases add, refunds subtract, never below 0, membership fees never count); crossing 5,000 /
 * 10,000 / 50,000 / 100,000 yuan upward emits gift tier_N, each once per customer ever (a refund
 * and a second crossing grant nothing). Thresholds and gift values are siyu_stream's defaults
 * (core/ruleset.py).
 *
 * <p>De-duplication: the last 32 order event ids per customer (the worker's dedup_window) are
 * kept in the state; an order whose event_id is among them is skipped. Not done, unlike the
 * worker: capping a refund at what its order paid (the worker remembers the last 20 orders),
 * the wall-clock bound on event times, dead-lettering the invalid (they are only counted).
 */
final class SpendTier implements Processor<String, byte[], String, byte[]> {
  static final long[] THRESHOLDS_YUAN = {5_000, 10_000, 50_000, 100_000};
  static final long[] GIFTS_YUAN = {200, 500, 2_000, 5_000};
  static final int DEDUP_WINDOW = 32;
  private static final Pattern AMOUNT = Pattern.compile("[0-9]{1,12}(\\.[0-9]{1,2})?");
  private static final ObjectMapper JSON = new ObjectMapper();
  // across the stream thread's tasks, printed once at shutdown
  private static final AtomicLong EVENTS = new AtomicLong();
  private static final AtomicLong ORDERS = new AtomicLong();
  private static final AtomicLong DUPLICATES = new AtomicLong();
  private static final AtomicLong INVALID = new AtomicLong();
  private static final AtomicLong GIFTS = new AtomicLong();

  private ProcessorContext<String, byte[]> context;
  private KeyValueStore<String, byte[]> store;

  static String counts() {
    return String.format(
        "events %d, orders applied %d, duplicates %d, invalid %d, gifts %d",
        EVENTS.get(), ORDERS.get(), DUPLICATES.get(), INVALID.get(), GIFTS.get());
  }

  @Override
  public void init(ProcessorContext<String, byte[]> context) {
    this.context = context;
    this.store = context.getStateStore(SpendTierPeer.STORE);
  }

  @Override
  public void process(Record<String, byte[]> record) {
    EVENTS.incrementAndGet();
    JsonNode event = parse(record.value());
    if (event == null || record.key() == null) {
      INVALID.incrementAndGet();
      return;
    }
    if (!"order".equals(event.path("type").textValue())) {
      return; // a chat or a join: nothing for this rule
    }
    String eventId = text(event, "event_id");
    long fen = fen(event.get("amount"));
    String status = text(event, "status");
    if (eventId == null
        || fen < 0
        || text(event, "customer_id") == null
        || text(event, "order_id") == null
        || !("paid".equals(status) || "refunded".equals(status))
        || !validTime(text(event, "occurred_at"))) {
      INVALID.incrementAndGet();
      return;
    }
    if ("membership".equals(event.path("kind").textValue())) {
      return; // a fee, not a purchase: never counts toward spend or tiers
    }

    byte[] stored = store.get(record.key());
    State s = stored == null ? new State() : State.decode(stored);
    if (s.recent.contains(eventId)) {
      DUPLICATES.incrementAndGet();
      return;
    }
    s.remember(eventId);
    long before = s.spendFen;
    if ("paid".equals(status)) {
      s.spendFen += fen;
      for (int i = 0; i < THRESHOLDS_YUAN.length; i++) {
        long threshold = THRESHOLDS_YUAN[i] * 100;
        boolean granted = (s.gifted & (1 << i)) != 0;
        if (before < threshold && threshold <= s.spendFen && !granted) {
          s.gifted |= 1 << i;
          context.forward(record.withValue(gift(record.key(), event, i, before, s.spendFen)));
          GIFTS.incrementAndGet();
        }
      }
    } else {
      s.spendFen = Math.max(0, before - fen);
    }
    store.put(record.key(), s.encode());
    ORDERS.incrementAndGet();
  }

  /** A gift action in the worker's envelope (topics/action.schema.json), no rules_version. */
  private static byte[] gift(String customer, JsonNode event, int tier, long before, long after) {
    String code = "tier_" + THRESHOLDS_YUAN[tier];
    ObjectNode action = JSON.createObjectNode();
    action.put("action_id", "spend_tier/" + customer + "/" + code); // once ever: unique
    action.put("kind", "gift");
    action.put("rule", "spend_tier");
    action.put("customer_id", customer);
    action.put("occurred_at", event.get("occurred_at").textValue());
    action.put("cause_event_id", event.get("event_id").textValue());
    action.putObject("detail").put("code", code).put("value", GIFTS_YUAN[tier] * 100);
    action.put(
        "because",
        String.format(
            "net spend %s → %s crossed %,d", yuan(before), yuan(after), THRESHOLDS_YUAN[tier]));
    try {
      return JSON.writeValueAsBytes(action);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static JsonNode parse(byte[] value) {
    if (value == null) {
      return null;
    }
    try {
      JsonNode node = JSON.readTree(value);
      return node != null && node.isObject() ? node : null;
    } catch (IOException e) {
      return null; // not JSON (the simulator sends some on purpose)
    }
  }

  /** A string field of 1 to 128 characters (topics/envelope.schema.json), else null. */
  private static String text(JsonNode event, String field) {
    JsonNode node = event.get(field);
    boolean ok = node != null && node.isTextual() && !node.textValue().isEmpty();
    return ok && node.textValue().length() <= 128 ? node.textValue() : null;
  }

  /** Yuan (a decimal string or JSON number, >= 0, at most 2 decimals) in fen; -1 if invalid. */
  static long fen(JsonNode amount) {
    BigDecimal yuan;
    if (amount == null) {
      return -1;
    } else if (amount.isTextual() && AMOUNT.matcher(amount.textValue()).matches()) {
      yuan = new BigDecimal(amount.textValue());
    } else if (amount.isNumber()) {
      yuan = amount.decimalValue(); // a double's shortest repr: 1713.9, not 1713.8999...
    } else {
      return -1;
    }
    if (yuan.signum() < 0 || yuan.stripTrailingZeros().scale() > 2) {
      return -1;
    }
    try {
      return yuan.movePointRight(2).longValueExact();
    } catch (ArithmeticException e) {
      return -1;
    }
  }

  /** RFC 3339 with a zone, as the worker requires ("2026-01-01T10:00:00" has none). */
  private static boolean validTime(String text) {
    if (text == null) {
      return false;
    }
    try {
      Instant.parse(text);
      return true;
    } catch (DateTimeParseException e) {
      return false;
    }
  }

  private static String yuan(long fen) {
    return String.format("%,d.%02d", fen / 100, fen % 100);
  }

  /** One customer's state, as stored: spend, the tiers gifted, the last order event ids. */
  static final class State {
    long spendFen;
    int gifted; // bit i: tier i's gift was sent
    final ArrayDeque<String> recent = new ArrayDeque<>(DEDUP_WINDOW);

    void remember(String eventId) {
      if (recent.size() == DEDUP_WINDOW) {
        recent.removeFirst();
      }
      recent.addLast(eventId);
    }

    /**
     * spend (8 bytes), gifted (1), count (1), then per event id: length (2; an id has at most
     * 128 characters) and UTF-8.
     */
    byte[] encode() {
      byte[][] ids =
          recent.stream().map(id -> id.getBytes(StandardCharsets.UTF_8)).toArray(byte[][]::new);
      int size = 10;
      for (byte[] id : ids) {
        size += 2 + id.length;
      }
      ByteBuffer out = ByteBuffer.allocate(size).putLong(spendFen).put((byte) gifted);
      out.put((byte) ids.length);
      for (byte[] id : ids) {
        out.putShort((short) id.length).put(id);
      }
      return out.array();
    }

    static State decode(byte[] bytes) {
      ByteBuffer in = ByteBuffer.wrap(bytes);
      State s = new State();
      s.spendFen = in.getLong();
      s.gifted = in.get();
      for (int n = in.get(); n > 0; n--) {
        byte[] id = new byte[in.getShort()];
        in.get(id);
        s.recent.addLast(new String(id, StandardCharsets.UTF_8));
      }
      return s;
    }
  }
}
