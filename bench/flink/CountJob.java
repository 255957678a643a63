import java.util.List;

import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/** sequence of N numbers -> count in operator ListState -> discard; args: N parallelism. */
public class CountJob {
    public static void main(String[] args) throws Exception {
        long n = Long.parseLong(args[0]);
        int p = Integer.parseInt(args[1]);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(p);
        env.enableCheckpointing(1000);
        env.fromSequence(0, n - 1).map(new Counter()).sinkTo(new DiscardingSink<>());
        env.execute("count");
    }

    public static class Counter extends RichMapFunction<Long, Long> implements CheckpointedFunction {
        private transient ListState<Long> state;
        private long count;

        @Override
        public Long map(Long value) {
            count++;
            return value;
        }

        @Override
        public void snapshotState(FunctionSnapshotContext context) throws Exception {
            state.update(List.of(count));
        }

        @Override
        public void initializeState(FunctionInitializationContext context) throws Exception {
            state = context.getOperatorStateStore().getListState(new ListStateDescriptor<>("count", Long.class));
            for (Long c : state.get()) {
                count += c;
            }
        }
    }
}
