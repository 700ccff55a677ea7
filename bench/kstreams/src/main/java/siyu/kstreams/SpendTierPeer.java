package siyu.kstreams;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of bench/live_bench.py (mode kstreams1): siyu-stream's spend-tier rule
 * in one processor over a persistent (RocksDB) key-value store with its changelog.
 *
 * <pre>
 * KSTREAMS_PEER_BROKER=127.0.0.1:P KSTREAMS_PEER_APP_ID=ID KSTREAMS_PEER_INPUTS=siyu.orders,...
 * KSTREAMS_PEER_OUT=TOPIC KSTREAMS_PEER_READY=FILE KSTREAMS_PEER_STATE_DIR=DIR
 * KSTREAMS_PEER_GUARANTEE=exactly_once|at_least_once  java -jar kstreams-peer.jar
 * </pre>
 *
 * Configured by environment, as bench/faust_peer.py: the application id is the consumer group
 * whose committed offsets live_bench watches; READY is touched each time the app turns RUNNING.
 */
public final class SpendTierPeer {
  static final String STORE = "spend";

  private SpendTierPeer() {}

  public static void main(String[] args) throws InterruptedException {
    String out = env("KSTREAMS_PEER_OUT", "siyu.kstreams-out");
    List<String> inputs = Arrays.asList(env("KSTREAMS_PEER_INPUTS", "siyu.orders").split(","));
    String ready = System.getenv("KSTREAMS_PEER_READY");

    KafkaStreams streams = new KafkaStreams(topology(inputs, out), config());
    streams.setStateListener(
        (now, before) -> {
          System.err.println("kstreams-peer: " + before + " -> " + now);
          if (now == KafkaStreams.State.RUNNING && ready != null) {
            touch(Path.of(ready));
          }
        });
    CountDownLatch stopped = new CountDownLatch(1);
    // live_bench stops a child with SIGTERM: close() commits (or aborts) the open transaction
    // and flushes the store, so a restart in the same group resumes from a clean point
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close();
                  System.err.println("kstreams-peer: closed; " + SpendTier.counts());
                  stopped.countDown();
                }));
    streams.start();
    stopped.await();
  }

  static Topology topology(List<String> inputs, String out) {
    StreamsBuilder builder = new StreamsBuilder();
    // persistentKeyValueStore is RocksDB; logging is on by default: every write also goes to
    // the changelog topic <application.id>-spend-changelog, compacted, inside the transaction
    builder.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.ByteArray()));
    // all three input topics, not only orders: every mode of the benchmark consumes the same
    // input and is timed until its offsets reach the ends of all of it; the processor skips
    // chats and joins after parsing them, as the spend-tier rule does
    builder.stream(inputs, Consumed.with(Serdes.String(), Serdes.ByteArray()))
        .process(SpendTier::new, STORE)
        .to(out, Produced.with(Serdes.String(), Serdes.ByteArray()));
    return builder.build();
  }

  static Properties config() {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("KSTREAMS_PEER_APP_ID", "kstreams-peer"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("KSTREAMS_PEER_BROKER", "127.0.0.1:9092"));
    boolean exactlyOnce = !env("KSTREAMS_PEER_GUARANTEE", "exactly_once").equals("at_least_once");
    p.put(
        StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
        exactlyOnce ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
    // a run ends when the group's committed offsets reach the input's ends: at_least_once
    // would commit only every 30 s by default; 100 ms is the exactly_once default, used for both
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.STATE_DIR_CONFIG, env("KSTREAMS_PEER_STATE_DIR", "/tmp/kstreams-peer"));
    // one stream thread, as the worker and the Faust peer are one event loop each
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    // a 1-node broker: internal topics (the changelog) cannot have more replicas
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    // the stream thread logs what it processed and committed every second (default: 2 min),
    // so the peer's log shows where a run's seconds went
    p.put(StreamsConfig.LOG_SUMMARY_INTERVAL_MS_CONFIG, 1000);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
    return p;
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  private static void touch(Path file) {
    try {
      Files.write(file, new byte[0]);
    } catch (IOException e) {
      System.err.println("kstreams-peer: cannot touch " + file + ": " + e);
    }
  }
}
