-- SurgLaVi caption database schema (as read by surgclip.data.db.CaptionDB).
-- Levels: 1 = task (fine), 2 = step (mid), 3 = phase (coarse). Times are seconds from the video start.
CREATE TABLE IF NOT EXISTS videos (
    video_id INTEGER PRIMARY KEY,
    title TEXT,
    name TEXT NOT NULL UNIQUE,          -- file key: {video_root}/{name}/{name}.mp4, {frames_root}/{name}/
    url TEXT,
    runtime TEXT,
    year INTEGER,
    fps REAL,
    duration REAL,                      -- seconds
    frame_count INTEGER,
    width INTEGER,
    height INTEGER,
    youtube_id TEXT,
    description TEXT,
    procedure_modality TEXT,
    procedure_type TEXT,
    specialty TEXT,
    subject TEXT,
    total_caption_count INTEGER
);
CREATE TABLE IF NOT EXISTS levels (
    level_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS captions (
    caption_id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos(video_id),
    video_name TEXT,
    level_id INTEGER NOT NULL REFERENCES levels(level_id),
    raw_narration TEXT,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    duration REAL,
    is_surgical_content INTEGER,
    is_descriptive INTEGER,
    caption TEXT                        -- enhanced (rewritten) caption; raw_narration is the transcript
);
CREATE TABLE IF NOT EXISTS transcriptions (
    transcription_id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos(video_id),
    file_path TEXT,
    text TEXT
);
CREATE INDEX IF NOT EXISTS captions_video ON captions(video_id);
CREATE INDEX IF NOT EXISTS captions_level ON captions(level_id);
