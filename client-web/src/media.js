// The local camera and microphone: device lists, the chosen devices, and the
// front/rear switch on phones.

const VIDEO = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 24, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class LocalMedia {
  constructor() {
    this.cameraId = '';
    this.micId = '';
    this.facingMode = 'user';
    this.videoTrack = null;
    this.audioTrack = null;
  }

  videoConstraints() {
    if (this.facingModeChosen) return { ...VIDEO, facingMode: { ideal: this.facingMode } };
    return this.cameraId ? { ...VIDEO, deviceId: { exact: this.cameraId } } : VIDEO;
  }

  audioConstraints() {
    return this.micId ? { ...AUDIO, deviceId: { exact: this.micId } } : AUDIO;
  }

  /** Opens the camera (replacing the current track); null when there is none or it was refused. */
  async openCamera() {
    this.stopCamera();
    try {
      const s = await navigator.mediaDevices.getUserMedia({ video: this.videoConstraints() });
      this.videoTrack = s.getVideoTracks()[0] ?? null;
      const settings = this.videoTrack?.getSettings() ?? {};
      if (settings.deviceId) this.cameraId = settings.deviceId;
      if (settings.facingMode) this.facingMode = settings.facingMode;
    } catch (e) {
      console.warn('camera unavailable', e);
      this.videoTrack = null;
    }
    return this.videoTrack;
  }

  async openMic() {
    this.stopMic();
    try {
      const s = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints() });
      this.audioTrack = s.getAudioTracks()[0] ?? null;
      const settings = this.audioTrack?.getSettings() ?? {};
      if (settings.deviceId) this.micId = settings.deviceId;
    } catch (e) {
      console.warn('microphone unavailable', e);
      this.audioTrack = null;
    }
    return this.audioTrack;
  }

  stopCamera() {
    this.videoTrack?.stop();
    this.videoTrack = null;
  }

  stopMic() {
    this.audioTrack?.stop();
    this.audioTrack = null;
  }

  /** Cameras and microphones (labels appear once permission was granted). */
  async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: all.filter((d) => d.kind === 'videoinput'),
      mics: all.filter((d) => d.kind === 'audioinput'),
    };
  }

  /** A front/rear switch makes sense with several cameras or on a touch device. */
  async canFlip() {
    const { cameras } = await this.devices();
    const touch = window.matchMedia?.('(pointer: coarse)').matches;
    return cameras.length > 1 || (touch && navigator.mediaDevices.getSupportedConstraints().facingMode);
  }

  /** Switches between front and rear camera; returns the new track. */
  async flip() {
    this.facingMode = this.facingMode === 'user' ? 'environment' : 'user';
    this.facingModeChosen = true;
    const track = await this.openCamera();
    if (track && track.getSettings().facingMode === undefined) {
      // A desktop with several cameras: cycle through them instead.
      const { cameras } = await this.devices();
      const i = cameras.findIndex((c) => c.deviceId === this.cameraId);
      const next = cameras[(i + 1) % cameras.length];
      if (next && next.deviceId !== this.cameraId) {
        this.facingModeChosen = false;
        this.cameraId = next.deviceId;
        return this.openCamera();
      }
    }
    return track;
  }

  chooseCamera(id) {
    this.cameraId = id;
    this.facingModeChosen = false;
  }

  chooseMic(id) {
    this.micId = id;
  }
}
