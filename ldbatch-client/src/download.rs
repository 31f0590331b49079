//! Downloading the results of a finished export.

use std::path::{Path, PathBuf};

use client_core::download::Download;
use url::Url;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::Job;

impl Client {
    /// Downloads every result file of a completed export job into `dir`
    /// and returns the paths written, in link order.
    ///
    /// Each file is streamed to disk by the core downloader (temporary
    /// file, sync, rename; broken transfers resumed), so an interrupted
    /// download leaves nothing behind. Links are treated as pre-signed (no
    /// bearer token); only a link on the service's own origin that answers
    /// 401 is fetched again with the token.
    ///
    /// # Errors
    /// [`Error::NoDownloadLink`] if the job carries no link;
    /// [`Error::InvalidRequest`] if the job has not completed; HTTP and I/O
    /// errors otherwise.
    pub async fn download_results(&self, job: &Job, dir: &Path) -> Result<Vec<PathBuf>> {
        if !job.status.is_success() {
            return Err(Error::InvalidRequest(format!(
                "job {} is {}, not Completed: there are no results to download",
                job.job_id, job.status
            )));
        }
        let links = job.download_links();
        if links.is_empty() {
            return Err(Error::NoDownloadLink {
                job_id: job.job_id.clone(),
            });
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| client_core::Error::io(format!("cannot create {}", dir.display()), e))?;
        let mut written = Vec::with_capacity(links.len());
        for (i, link) in links.iter().enumerate() {
            let name = file_name_for(link, &job.job_id, i, links.len(), job);
            let dest = dir.join(name);
            self.download_one(link, &dest).await?;
            written.push(dest);
        }
        Ok(written)
    }

    async fn download_one(&self, link: &str, dest: &Path) -> Result<()> {
        // Result links expire after a week: they are pre-signed, so the
        // token is not sent. Only a link on the service's own origin that
        // answers 401 is tried again with the token.
        let saved = match Download::presigned(link).to_file(self.http(), dest).await {
            Err(e) if e.status() == Some(401) && self.same_origin(link) => {
                tracing::debug!("result link wants authentication; retrying with the token");
                Download::authenticated(link)
                    .to_file(self.http(), dest)
                    .await?
            }
            other => other?,
        };
        tracing::info!(path = %saved.path.display(), bytes = saved.bytes, "downloaded LD export results");
        Ok(())
    }

    fn same_origin(&self, link: &str) -> bool {
        let (Some(base), Ok(url)) = (self.http().base_url(), Url::parse(link)) else {
            return false;
        };
        base.scheme() == url.scheme()
            && base.host_str() == url.host_str()
            && base.port_or_known_default() == url.port_or_known_default()
    }
}

/// The link's last path segment when it is a plain file name with an
/// extension; otherwise `<job id>.<ext>` (the format's extension). With
/// several links, names are prefixed by their position so two links ending
/// alike do not overwrite each other.
fn file_name_for(link: &str, job_id: &str, index: usize, count: usize, job: &Job) -> String {
    let ext = job
        .content_type
        .as_ref()
        .map(|c| c.extension())
        .unwrap_or("dat");
    let from_url = Url::parse(link)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
        })
        .filter(|n| is_plain_name(n) && n.contains('.'));
    let safe_job: String = job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let base = from_url.unwrap_or_else(|| format!("{safe_job}.{ext}"));
    if count > 1 {
        format!("{:03}-{base}", index + 1)
    } else {
        base
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_str(
            r#"{"jobId":"ab/../c","status":"Completed","contentType":"application/json"}"#,
        )
        .unwrap()
    }

    #[test]
    fn names_come_from_the_url_or_the_job() {
        let j = job();
        let name = |link: &str, id: &str, i: usize, n: usize| file_name_for(link, id, i, n, &j);
        assert_eq!(
            name("https://s3.example/b/out.json?X-Sig=1", "j", 0, 1),
            "out.json"
        );
        assert_eq!(name("https://s3.example/b/..", "ab/../c", 0, 1), "abc.json");
        assert_eq!(name("https://s3.example/", "j", 1, 2), "002-j.json");
        assert_eq!(name("https://ld.example/dl/j/5f3a9c", "j", 0, 1), "j.json");
    }
}
