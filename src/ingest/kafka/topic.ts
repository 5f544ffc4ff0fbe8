/**
 * The partitioning contract: the topic has exactly S partitions (S = the cluster's shard count), so
 * partition i maps to shard i. Checked once at startup; a mismatch is an error that says how to fix it.
 */
import { TidemarkError } from '../../errors/index.js';
import type { KafkaIo } from './client.js';

/** Throws FAILED_PRECONDITION unless `topic` exists with exactly `shards` partitions. */
export async function checkTopic(
  io: KafkaIo,
  brokers: readonly string[],
  topic: string,
  shards: number,
): Promise<void> {
  const n = await io.partitionCount(topic);
  const bs = brokers.join(',');
  if (n === undefined) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'kafka_topic_missing',
      `Kafka topic "${topic}" does not exist. Create it with one partition per shard (${shards}):\n` +
        `  kafka-topics.sh --bootstrap-server ${bs} --create --topic ${topic} --partitions ${shards} --replication-factor 3`,
      { topic, expectedPartitions: shards },
    );
  }
  if (n === shards) return;
  const fix =
    n < shards
      ? `Add partitions:\n  kafka-topics.sh --bootstrap-server ${bs} --alter --topic ${topic} --partitions ${shards}\n` +
        `(records already in partitions 0..${n - 1} stay there; producers using the Tidemark partitioner route new ` +
        'records by the new count.)'
      : `Kafka cannot remove partitions: create a new topic with ${shards} partitions and point producers and ` +
        `Tidemark at it:\n  kafka-topics.sh --bootstrap-server ${bs} --create --topic <new-topic> --partitions ${shards}`;
  throw new TidemarkError(
    'FAILED_PRECONDITION',
    'kafka_partition_mismatch',
    `Kafka topic "${topic}" has ${n} partitions but the cluster has ${shards} shards; ` +
      `partition i feeds shard i, so they must be equal. ${fix}`,
    { topic, partitions: n, expectedPartitions: shards },
  );
}

/** Throws FAILED_PRECONDITION unless the dead-letter topic exists (bad records would otherwise stall). */
export async function checkDeadLetterTopic(
  io: KafkaIo,
  brokers: readonly string[],
  topic: string,
): Promise<void> {
  if ((await io.partitionCount(topic)) !== undefined) return;
  throw new TidemarkError(
    'FAILED_PRECONDITION',
    'kafka_dead_letter_topic_missing',
    `the dead-letter topic "${topic}" does not exist. Create it (compaction drops the duplicates a crash may cause):\n` +
      `  kafka-topics.sh --bootstrap-server ${brokers.join(',')} --create --topic ${topic} --partitions 1 ` +
      '--config cleanup.policy=compact',
    { topic },
  );
}
