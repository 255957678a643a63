import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * sequence of N numbers, keyed by "key-" + (n mod K) -> count per key in keyed ValueState ->
 * discard; args: N K parallelism CHECKPOINT_DIR. The keys are strings, as wasmflow's are bytes.
 * Checkpoints go to files in CHECKPOINT_DIR, as wasmflow's do (the default in-memory checkpoint
 * storage refuses state over 5 MB, and a million counts is more).
 */
public class KeyedCountJob {
    public static void main(String[] args) throws Exception {
        long n = Long.parseLong(args[0]);
        long keys = Long.parseLong(args[1]);
        int p = Integer.parseInt(args[2]);
        Configuration config = new Configuration();
        config.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
        config.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, "file://" + args[3]);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(config);
        env.setParallelism(p);
        env.setMaxParallelism(128);
        env.enableCheckpointing(1000);
        env.fromSequence(0, n - 1)
                .map(v -> "key-" + (v % keys))
                .keyBy(k -> k)
                .map(new Counter())
                .sinkTo(new DiscardingSink<>());
        env.execute("keyed-count");
    }

    public static class Counter extends RichMapFunction<String, Long> {
        private transient ValueState<Long> count;

        @Override
        public void open(OpenContext context) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        }

        @Override
        public Long map(String key) throws Exception {
            Long c = count.value();
            long next = c == null ? 1 : c + 1;
            count.update(next);
            return next;
        }
    }
}
