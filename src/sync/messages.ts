/**
 * What sync messages carry, as zod schemas: every message from a peer is checked against these
 * before anything in it is used. Pure: no I/O.
 */
import { z } from 'zod';
import { PoskoError } from '../domain/errors.ts';
import { isDocId, isHead } from './documents.ts';
import { decodeBody, encodeBody, type Body } from './wire.ts';

const Heads = z.array(z.string().refine(isHead, 'a change hash is 64 hex digits')).max(4096);
const DocIdSchema = z.string().max(80).refine(isDocId, 'unknown document id');

/**
 * A writer's signature over a document's heads. Change hashes chain (each covers its
 * dependencies), so it authenticates every change those heads descend from: a relay can pass a
 * document on, but cannot add to it.
 */
export const StatementSchema = z.strictObject({
  signer: z.string().max(40),
  heads: Heads,
  sig: z.string().regex(/^[A-Za-z0-9_-]{86}$/),
});
export type Statement = z.infer<typeof StatementSchema>;

/** One document's chunk: what it brings the receiver to (`heads`), and its integrity. */
export const ChunkMetaSchema = z.strictObject({
  doc: DocIdSchema,
  heads: Heads,
  /** SHA-256 of the bytes, hex. */
  sha: z.string().regex(/^[0-9a-f]{64}$/),
  len: z.number().int().nonnegative(),
  /** A whole saved document rather than changes since what the receiver has. */
  full: z.boolean(),
  /** Its writers' signatures covering every change in it. */
  sigs: z.array(StatementSchema).max(16),
});
export type ChunkMeta = z.infer<typeof ChunkMetaSchema>;

const HeadsList = z.array(z.tuple([DocIdSchema, Heads])).max(1_000_000);

const Refusal = z.strictObject({ doc: z.string().max(200), code: z.string().max(40), message: z.string().max(2000) });
export type Refusal = z.infer<typeof Refusal>;

/** Client → server: opens an exchange. */
export const HelloSchema = z.strictObject({
  /** Digest of everything the client has. */
  root: z.string().max(64),
  chunks: z.array(ChunkMetaSchema).max(100_000),
  /** Every document and its heads at the client, when the server asked for it. */
  summary: HeadsList.optional(),
  /** Ask the server for its summary (the client's knowledge of the server was wrong). */
  wantSummary: z.boolean().optional(),
  /** The most chunk bytes the client wants in the reply (its link's message size). */
  maxReply: z.number().int().min(16 * 1024).optional(),
});
export type Hello = z.infer<typeof HelloSchema>;

/** Server → client: what the server now has, what it refused, and what the client lacks. */
export const ReplySchema = z.strictObject({
  /** SHA-256 of the hello this answers (hex): binds the reply to its request. */
  re: z.string().regex(/^[0-9a-f]{64}$/),
  root: z.string().max(64),
  acks: HeadsList,
  refused: z.array(Refusal).max(100_000),
  chunks: z.array(ChunkMetaSchema).max(100_000),
  /** The server's knowledge of the client did not match: send the summary. */
  needSummary: z.boolean(),
  summary: HeadsList.optional(),
  /** More was to send than fit in one message: exchange again. */
  more: z.boolean(),
});
export type Reply = z.infer<typeof ReplySchema>;

/** Client → server: the heads the client now has for the documents the server sent. */
export const AckSchema = z.strictObject({ re: z.string().regex(/^[0-9a-f]{64}$/), heads: HeadsList });
export type Ack = z.infer<typeof AckSchema>;

export const AckedSchema = z.strictObject({ re: z.string().regex(/^[0-9a-f]{64}$/) });
export type Acked = z.infer<typeof AckedSchema>;

/** A one-way bundle: chunks, and every document's heads at the sender when it was made. */
export const BundleSchema = z.strictObject({
  chunks: z.array(ChunkMetaSchema).max(1_000_000),
  have: HeadsList,
  /** For whom the chunks were chosen (what they were known to have), or null for everything. */
  for: z.string().max(40).nullable(),
});
export type Bundle = z.infer<typeof BundleSchema>;

/** Encodes a message body (JSON plus the chunks' bytes in order). */
export function encodeMessage<T extends object>(json: T, blobs: Uint8Array[] = []): Buffer {
  return encodeBody({ json, blobs });
}

/** Decodes and validates a message body; SYNC_MALFORMED when it is not what `schema` describes. */
export function decodeMessage<T extends object>(frame: Uint8Array, schema: z.ZodType<T>): Body<T> {
  const raw = decodeBody<unknown>(frame, (j) => {
    const chunks = (j as { chunks?: unknown }).chunks;
    return Array.isArray(chunks) ? chunks.map((c) => (c as { len?: unknown })?.len as number) : [];
  });
  const parsed = schema.safeParse(raw.json);
  if (!parsed.success) {
    throw new PoskoError('SYNC_MALFORMED', 'the sync message does not have the expected shape', {
      issues: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`),
    });
  }
  return { json: parsed.data, blobs: raw.blobs };
}
