//! Uploaded breakout data, kept in the main database in chunks of [`UPLOAD_CHUNK_BYTES`]:
//! written a chunk at a time as the file is read, and read back the same way, so an
//! upload costs a chunk of memory whatever its size, and a job can run on any replica.
//!
//! The last chunk of an upload is always short (empty when the file fills its chunks
//! exactly), so a reader knows the end from a chunk that went missing.
//!
//! An upload is written before the dictionary that refers to it (it must be complete
//! first), each chunk in its own statement so that a large file never holds a connection
//! for long. One that no dictionary came to refer to (its process died in between) is
//! deleted by a later registration once it is [`ABANDONED_AFTER`] old.

use std::time::Duration;

use sqlx::Row;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Breakout, BreakoutSink, Result, StoreError};
use crate::domain::ids::{ProjectId, UploadId};
use crate::store::to_ms;

/// Bytes per stored chunk: large enough that a file takes few statements, small enough
/// that the few copies a statement makes of it cost little.
pub const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// Longer than writing the largest upload takes, so no upload still being written is
/// taken for an abandoned one.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("reading or writing the file: {0}")]
    File(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UploadError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Breakout {
    /// Stores the whole of `data` as a new upload of the project, and gives its id and
    /// size. Nothing refers to it until a dictionary is registered with it.
    pub async fn write_upload(
        &self,
        project: ProjectId,
        data: &mut (dyn AsyncRead + Unpin + Send),
    ) -> std::result::Result<(UploadId, u64), UploadError> {
        match self.sweep_abandoned_uploads().await {
            Ok(0) => {}
            Ok(chunks) => tracing::info!(chunks, "breakout: abandoned uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "breakout: abandoned uploads not deleted"),
        }
        let upload = UploadId::new();
        let written = self.write_chunks(project, upload, data).await;
        if written.is_err() {
            if let Err(e) = self.discard_upload(upload).await {
                tracing::warn!(error = %e, %upload, "breakout: a failed upload was left behind");
            }
        }
        written.map(|size| (upload, size))
    }

    async fn write_chunks(
        &self,
        project: ProjectId,
        upload: UploadId,
        data: &mut (dyn AsyncRead + Unpin + Send),
    ) -> std::result::Result<u64, UploadError> {
        let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
        let mut size = 0;
        for seq in 0i64.. {
            let n = fill(data, &mut buffer).await?;
            sqlx::query(
                "INSERT INTO breakout_uploads (upload_id, seq, project_id, bytes, written_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(upload.db())
            .bind(seq)
            .bind(project.db())
            .bind(&buffer[..n])
            .bind(to_ms(crate::clock::now()))
            .execute(&self.pool)
            .await?;
            size += n as u64;
            if n < buffer.len() {
                break;
            }
        }
        Ok(size)
    }

    /// Deletes an upload that will not be registered.
    pub async fn discard_upload(&self, upload: UploadId) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        delete(&mut conn, &upload.db()).await
    }

    /// Deletes uploads that no dictionary refers to and that are too old to be still
    /// on their way to one; gives how many chunks went.
    async fn sweep_abandoned_uploads(&self) -> Result<u64> {
        let before = crate::clock::now()
            - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or(chrono::Duration::zero());
        let done = sqlx::query(
            "DELETE FROM breakout_uploads WHERE written_at < $1 AND upload_id NOT IN
               (SELECT upload_id FROM breakout_dictionaries WHERE upload_id IS NOT NULL)",
        )
        .bind(to_ms(before))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Fills `buffer` from `data` as far as it goes; short only at the end of the data.
async fn fill(
    data: &mut (dyn AsyncRead + Unpin + Send),
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match data.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub(super) async fn delete(conn: &mut sqlx::AnyConnection, upload: &str) -> Result<()> {
    sqlx::query("DELETE FROM breakout_uploads WHERE upload_id = $1")
        .bind(upload)
        .execute(conn)
        .await?;
    Ok(())
}

impl BreakoutSink {
    /// Writes an upload of the project into `out`, a chunk at a time, and gives its size;
    /// `None` if it is gone (its dictionary was registered again or deleted meanwhile).
    pub async fn copy_upload(
        &self,
        upload: UploadId,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> std::result::Result<Option<u64>, UploadError> {
        let mut size = 0;
        for seq in 0i64.. {
            let row = sqlx::query(
                "SELECT bytes FROM breakout_uploads
                 WHERE upload_id = $1 AND seq = $2 AND project_id = $3",
            )
            .bind(upload.db())
            .bind(seq)
            .bind(self.project.db())
            .fetch_optional(&self.breakout.pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let bytes: Vec<u8> = row.try_get("bytes")?;
            out.write_all(&bytes).await?;
            size += bytes.len() as u64;
            if bytes.len() < UPLOAD_CHUNK_BYTES {
                break;
            }
        }
        out.flush().await?;
        Ok(Some(size))
    }
}
