// The service layer's public API for transports and the composition root; see docs/architecture.md "service".
export type { AttachReply, CallContext, ChatApi, CoreToGateway, GatewayToCore, PendingReply, Reply, BusEvent, FanoutEvent, NewsEvent, SessionEndedEvent } from './api.ts';
export { ChatService, type GatewayInfo, type Logger, type ServiceOptions } from './service.ts';
export { validateCall } from './validate.ts';
export { LocalRateCounters } from './rate-limit.ts';
export { SubscriptionRegistry, subscriptionOf, type Subscription } from './subscriptions.ts';
export { RecentSessionEnds } from './session-ends.ts';
export { MediaService, mediaBlobKey, type MediaOptions } from './media.ts';
export { contentDisposition } from '../core/media-rules.ts';
export { MAX_TRANSCODE_BYTES, TRANSCODED_VOICE_MIMES, VoiceTranscodeError, voiceToMp3 } from './voice-mp3.ts';
export type { BlobStore } from '../core/ports.ts';
