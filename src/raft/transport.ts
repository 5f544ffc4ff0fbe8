/**
 * The driver's view of the network: it hands the transport the messages of a Ready (after they are
 * durable) and receives the messages addressed to this node. Delivery is best effort (Raft tolerates
 * loss, duplication and reordering); `send` must not block on the network.
 */
import type { Message, NodeId } from './types.js';

/** Delivery feedback the core wants to hear about (RawNode.reportUnreachable / reportSnapshot). */
export type TransportReport =
  | { kind: 'unreachable'; to: NodeId }
  | { kind: 'snapshot'; to: NodeId; ok: boolean };

export interface Transport {
  /** This node's id. */
  readonly id: NodeId;
  /** Queues messages for delivery; never throws for an unreachable peer (that is reported instead). */
  send(messages: Message[]): void;
  /** Registers the (single) handler for messages addressed to this node; replaces any previous one. */
  onMessage(handler: (message: Message) => void): void;
  /** Registers the (single) handler for delivery reports (optional to implement). */
  onReport?(handler: (report: TransportReport) => void): void;
  /** Stops sending and receiving. */
  close(): Promise<void>;
}
