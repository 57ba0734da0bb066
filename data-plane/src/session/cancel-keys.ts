/**
 * The BackendKeyData sluice hands to clients encodes the data-plane node, so a CancelRequest that a
 * load balancer sends to any node can be routed to the node holding the session (design: data path 8).
 * pid = node number (11 bits) << 20 | per-node counter (20 bits); always a positive int32.
 * The secret is random and is checked against the session's before anything is cancelled. Pure.
 */
export const MAX_NODE_NUMBER = 0x7ff;
const COUNTER_BITS = 20;
const COUNTER_MASK = (1 << COUNTER_BITS) - 1;

export function encodeClientPid(node: number, counter: number): number {
  if (!Number.isInteger(node) || node < 0 || node > MAX_NODE_NUMBER) throw new RangeError(`node number ${node} out of range 0..${MAX_NODE_NUMBER}`);
  return ((node << COUNTER_BITS) | (counter & COUNTER_MASK)) >>> 0;
}

export function nodeOfClientPid(pid: number): number {
  return (pid >>> COUNTER_BITS) & MAX_NODE_NUMBER;
}

/** A stable node number from a node id string (FNV-1a), for nodes configured without one. */
export function nodeNumberFromId(nodeId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < nodeId.length; i++) {
    h ^= nodeId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % (MAX_NODE_NUMBER + 1);
}
